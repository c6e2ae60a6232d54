package worker

import (
	"fmt"
	"sync"
	"time"

	"github.com/rediq/rediq/internal/codec"
)

// envelope is a decoded message; pooled, since every task decodes one.
type envelope struct{ codec.Envelope }

var envelopePool = sync.Pool{New: func() any { return new(envelope) }}

func (e *envelope) decode(b []byte) error { return codec.DecodeInto(b, &e.Envelope) }

func (e *envelope) encode() []byte { return codec.Encode(&e.Envelope) }

// deadUndecodable wraps bytes that are not a message into one for the dead set,
// keeping the original bytes.
func deadUndecodable(raw []byte, err error) []byte {
	now := time.Now()
	return codec.Encode(&codec.Envelope{
		ID: codec.NewID(now), Name: "(undecodable)", EnqueuedAt: now.UnixMilli(), MaxRetries: -1,
		Error: fmt.Sprintf("rediq: undecodable message: %v", err), Raw: raw,
	})
}
