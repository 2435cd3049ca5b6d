package memstore_test

import (
	"testing"

	"popgate/mailstore/memstore"
	"popgate/mailstore/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(*testing.T) storetest.Backend { return memstore.New() },
	})
}
