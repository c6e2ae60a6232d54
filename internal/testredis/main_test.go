package testredis_test

import (
	"testing"

	"github.com/rediq/rediq/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }
