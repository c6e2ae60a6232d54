//go:build race

package worker_test

// raceDetector: the race detector slows every goroutine several times and
// spreads their scheduling: timing thresholds allow for it.
const raceDetector = true
