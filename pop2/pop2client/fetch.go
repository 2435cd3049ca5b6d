package pop2client

import (
	"fmt"
	"strconv"
)

// Message is one retrieved message: its number and its octets exactly as
// the server sent them.
type Message struct {
	N    int
	Data []byte
}

// FetchOptions says how [Client.FetchAll] works.
type FetchOptions struct {
	// Delete acknowledges with ACKD (delete) instead of ACKS (keep).
	Delete bool
	// InFlight is how many commands may await their replies. 0 or 1 is
	// lock-step, as popclient worked; fetchmail 6.3 pipelines READ, RETR
	// and the acknowledgment, about 20 commands in flight. A pipelined
	// client sends RETR before it sees READ's reply, so it relies on every
	// message of a freshly selected mailbox being non-empty: a "=0" makes
	// the server close the connection and FetchAll fail.
	InFlight int
}

// FetchAll retrieves messages 1..count of the selected mailbox, each with
// "READ n" (an explicit number, as fetchmail sends it), RETR, and ACKS or
// ACKD. In lock-step mode a message announced as "=0" is skipped.
func (c *Client) FetchAll(count int, opts FetchOptions) ([]Message, error) {
	ack := "ACKS"
	if opts.Delete {
		ack = "ACKD"
	}
	if opts.InFlight <= 1 {
		return c.fetchLockStep(count, ack)
	}
	return c.fetchPipelined(count, ack, opts.InFlight)
}

func (c *Client) fetchLockStep(count int, ack string) ([]Message, error) {
	var out []Message
	for n := 1; n <= count; n++ {
		size, err := c.Read(n)
		if err != nil {
			return out, err
		}
		if size == 0 {
			continue
		}
		data, err := c.Retr(size)
		if err != nil {
			return out, err
		}
		out = append(out, Message{N: n, Data: data})
		if _, err := c.length(ack, ack); err != nil {
			return out, err
		}
	}
	return out, nil
}

// step is one pipelined command awaiting its reply.
type step struct {
	verb string // READ, RETR, ACKS or ACKD
	n    int
}

func (c *Client) fetchPipelined(count int, ack string, depth int) ([]Message, error) {
	steps := make([]step, 0, 3*count)
	for n := 1; n <= count; n++ {
		steps = append(steps, step{"READ", n}, step{"RETR", n}, step{ack, n})
	}
	var (
		out      []Message
		inFlight []step
		sent     int
		size     int64 // the size the last READ announced
	)
	for sent < len(steps) || len(inFlight) > 0 {
		for sent < len(steps) && len(inFlight) < depth {
			s := steps[sent]
			line := s.verb
			if s.verb == "READ" {
				line += " " + strconv.Itoa(s.n)
			}
			if err := c.lc.Write(line); err != nil {
				return out, err
			}
			inFlight = append(inFlight, s)
			sent++
		}
		if err := c.lc.Flush(); err != nil {
			return out, err
		}
		s := inFlight[0]
		inFlight = inFlight[1:]
		switch s.verb {
		case "READ":
			var err error
			if size, err = c.number("READ", '='); err != nil {
				return out, err
			}
			if size == 0 {
				return out, fmt.Errorf("pop2client: message %d announced as =0 with RETR already sent", s.n)
			}
		case "RETR":
			data, err := c.lc.ReadData("RETR", size)
			if err != nil {
				return out, err
			}
			out = append(out, Message{N: s.n, Data: data})
		default:
			if _, err := c.number(s.verb, '='); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}
