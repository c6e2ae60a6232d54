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

// deadUndecodable wraps bytes that are not a valid message into one for the
// dead set, under the task's id, keeping the original bytes.
func deadUndecodable(id string, raw []byte, err error, now time.Time) []byte {
	return codec.Encode(&codec.Envelope{
		ID: id, Name: "(undecodable)", EnqueuedAt: now.UnixMilli(), MaxRetries: -1,
		Error: fmt.Sprintf("rediq: undecodable message: %v", err), Raw: raw,
	})
}
