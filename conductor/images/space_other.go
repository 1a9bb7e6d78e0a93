//go:build !linux && !darwin

package images

import (
	"errors"
	"io/fs"
	"time"
)

// freeBytes is unknown here: the cache's own cap still applies.
func freeBytes(string) (int64, error) { return 0, errors.New("free space unknown on this system") }

// accessTime falls back to the modification time.
func accessTime(fi fs.FileInfo) time.Time { return fi.ModTime() }
