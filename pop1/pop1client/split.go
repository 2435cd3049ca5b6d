package pop1client

import (
	"bytes"
	"errors"
	"fmt"
)

// Message is one message of the mail data.
type Message struct {
	// Separator is its "From " line, without the line end.
	Separator string
	// Data is the message with quoting undone: its CRLF form as the
	// server's store holds it.
	Data []byte
}

// ErrNotMbox means the mail data are not in the mbox form popgate sends.
var ErrNotMbox = errors.New("pop1client: mail data are not an mbox")

// Split cuts mail data in popgate's form back into messages. The form is
// an mbox with CRLF line ends: each message starts with a separator line
// beginning "From ", is followed by one empty line, and has every line
// that matched ">*From " quoted with one more ">" (mboxrd). Split removes
// the separators and the empty lines and undoes the quoting, so each
// message comes back byte for byte. Empty mail data are no messages.
func Split(data []byte) ([]Message, error) {
	var out []Message
	if len(data) == 0 {
		return nil, nil
	}
	lines := splitLines(data)
	if !bytes.HasPrefix(lines[0], []byte("From ")) {
		return nil, fmt.Errorf("%w: does not start with a \"From \" line", ErrNotMbox)
	}
	var cur *Message
	var body [][]byte
	closeMsg := func() error {
		// The message must end with the empty line that follows it.
		if len(body) == 0 || string(body[len(body)-1]) != "\r\n" {
			return fmt.Errorf("%w: message %d is not followed by an empty line", ErrNotMbox, len(out)+1)
		}
		var b bytes.Buffer
		for _, l := range body[:len(body)-1] {
			b.Write(unquote(l))
		}
		cur.Data = b.Bytes()
		out = append(out, *cur)
		return nil
	}
	for _, l := range lines {
		if bytes.HasPrefix(l, []byte("From ")) {
			if cur != nil {
				if err := closeMsg(); err != nil {
					return nil, err
				}
			}
			if !bytes.HasSuffix(l, []byte("\r\n")) {
				return nil, fmt.Errorf("%w: separator line without CRLF", ErrNotMbox)
			}
			cur = &Message{Separator: string(bytes.TrimSuffix(l, []byte("\r\n")))}
			body = body[:0]
			continue
		}
		body = append(body, l)
	}
	if err := closeMsg(); err != nil {
		return nil, err
	}
	return out, nil
}

// splitLines cuts data after every LF; the last piece may lack one.
func splitLines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i+1])
		data = data[i+1:]
	}
	return out
}

// unquote removes one '>' from a line matching ">+From ".
func unquote(l []byte) []byte {
	i := 0
	for i < len(l) && l[i] == '>' {
		i++
	}
	if i > 0 && bytes.HasPrefix(l[i:], []byte("From ")) {
		return l[1:]
	}
	return l
}
