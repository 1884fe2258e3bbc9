//go:build tools

// Package tools records the commands build.sh compiles, so `go mod tidy` keeps their dependencies.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
