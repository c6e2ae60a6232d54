package worker

import "time"

// WithClockSkew returns cfg with the worker's clock running skew ahead of the
// real one (negative: behind), as on a machine whose clock is off.
func WithClockSkew(cfg Config, skew time.Duration) Config {
	cfg.now = func() time.Time { return time.Now().Add(skew) }
	return cfg
}
