package bench

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// A small run yields every figure and leaves the Redis as it found it.
func TestRunLeavesNoKeys(t *testing.T) {
	testredis.RequireReal(t) // INFO memory
	t.Parallel()
	rdb := testredis.Client(t)
	ctx := context.Background()
	before, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, Config{Redis: rdb, Tasks: 3000, Producers: 4, Concurrency: 8, Batch: 500, Rate: 500, Duration: 300 * time.Millisecond, RunSamples: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.EnqueuePerSec <= 0 || res.EnqueueBatchPerSec <= 0 || res.ProcessPerSec <= 0 || res.LatencyP50Ms <= 0 ||
		res.LatencyP99Ms < res.LatencyP50Ms || res.BytesPerTask <= 0 || res.LatencySamples == 0 || res.Tasks != 3000 ||
		res.RunSamples != 100 || res.RunP50Ms <= 0 || res.RunP99Ms < res.RunP50Ms || res.BytesPerRetained <= 0 ||
		res.RedisCPUEnqueue <= 0 || res.RedisCPUBatch <= 0 || res.RedisCPUProcess <= 0 {
		t.Fatalf("implausible result %+v", res)
	}
	if after := rdb.DBSize(ctx).Val(); after != before {
		t.Fatalf("%d keys before the run, %d after", before, after)
	}
}
