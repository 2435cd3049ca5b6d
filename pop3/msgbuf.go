package pop3

import (
	"bufio"
	"sync"
)

// bigBufferSize is the size of the read buffer and of the write buffer
// that a large message is sent through: reads and writes of this size cost
// fewer system calls per octet than copyBufferSize ones.
const bigBufferSize = 256 * 1024

// msgBuffers is the pair of buffers a connection borrows while it sends
// one large message. They go back to the server's pool afterwards, so an
// idle session holds none and the memory in use is bounded by the number
// of messages being sent at once.
type msgBuffers struct {
	read []byte
	w    *bufio.Writer
}

// msgBufferPool hands out msgBuffers. Each Server owns one.
type msgBufferPool struct{ p sync.Pool }

func (p *msgBufferPool) get() *msgBuffers {
	if b, ok := p.p.Get().(*msgBuffers); ok {
		return b
	}
	return &msgBuffers{read: make([]byte, bigBufferSize), w: bufio.NewWriterSize(nil, bigBufferSize)}
}

// put returns b. It must not be used afterwards.
func (p *msgBufferPool) put(b *msgBuffers) {
	b.w.Reset(nil)
	p.p.Put(b)
}
