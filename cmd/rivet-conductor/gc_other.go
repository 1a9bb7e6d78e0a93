//go:build !linux

package main

// softMemoryLimit is not set outside Linux.
func softMemoryLimit() (int64, bool) { return 0, false }
