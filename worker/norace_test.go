//go:build !race

package worker_test

// raceDetector: see race_test.go.
const raceDetector = false
