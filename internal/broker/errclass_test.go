package broker_test

import (
	"errors"
	"io"
	"testing"

	"github.com/rediq/rediq/internal/broker"
)

// Which errors mean the call did not run (Refused) and which may go away when
// sent again (Retryable): a redirect from a per-node call of WaitReplicas on a
// Cluster is both — before, it left an enqueue's outcome unknown.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name               string
		err                error
		refused, retryable bool
	}{
		{"moved", replyError("MOVED 3999 127.0.0.1:6381"), true, true},
		{"ask", replyError("ASK 3999 127.0.0.1:6381"), true, true},
		{"wrongpass", replyError("WRONGPASS invalid username-password pair"), true, false},
		{"script check", replyError("ERR rediq: bad argument"), true, false},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), false, true},
		{"readonly", replyError("READONLY You can't write against a read only replica."), false, true},
		{"other reply", replyError("ERR unknown command"), false, false},
		{"network", io.EOF, false, true},
		{"wrapped moved", errors.Join(errors.New("enqueue"), replyError("MOVED 1 h:1")), true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := broker.Refused(c.err); got != c.refused {
				t.Errorf("Refused(%v) = %v, want %v", c.err, got, c.refused)
			}
			if got := broker.Retryable(c.err); got != c.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", c.err, got, c.retryable)
			}
		})
	}
}
