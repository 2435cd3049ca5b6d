package users

import (
	"context"
	"errors"
	"testing"

	"popgate/mailstore"
)

// TestAuthenticateCRAMMD5 uses the RFC 2195 §2 example: secret
// "tanstaaftanstaaf", challenge <1896.697170952@postoffice.reston.mci.net>.
func TestAuthenticateCRAMMD5(t *testing.T) {
	const (
		challenge = "<1896.697170952@postoffice.reston.mci.net>"
		digest    = "b913a602c7eda7a495b4e6e7334d3890"
	)
	ctx := context.Background()
	db := NewMemory()
	if err := db.SetPassword("tim", "tanstaaftanstaaf", Plain); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPassword("hashed", "tanstaaftanstaaf", SHA512Crypt); err != nil {
		t.Fatal(err)
	}
	if id, err := db.AuthenticateCRAMMD5(ctx, "tim", challenge, digest); err != nil || id.User != "tim" {
		t.Fatalf("RFC 2195 example: %v %v", id, err)
	}
	if _, err := db.AuthenticateCRAMMD5(ctx, "tim", challenge, "00"+digest[2:]); !errors.Is(err, mailstore.ErrAuthFailed) {
		t.Errorf("wrong digest: %v", err)
	}
	if _, err := db.AuthenticateCRAMMD5(ctx, "nobody", challenge, digest); err == nil {
		t.Error("unknown user accepted")
	}
	if _, err := db.AuthenticateCRAMMD5(ctx, "hashed", challenge, digest); !errors.Is(err, mailstore.ErrUnsupported) {
		t.Errorf("hashed secret: %v, want ErrUnsupported", err)
	}
}
