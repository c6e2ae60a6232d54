package broker_test

import "embed"

//go:embed scripts/*.lua
var scriptsFS embed.FS
