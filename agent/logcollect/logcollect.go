// Package logcollect builds the archive log.collect_system_logs returns: a
// gzip-compressed tar of named sources (the agent's log, the kernel log,
// mounts, block devices, network state, command history), base64-encoded
// for the JSON result. A source that cannot be read is archived as a short
// file saying why, so one failure never loses the others.
package logcollect

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"sort"
	"time"
)

// Source is one file of the archive.
type Source struct {
	// Name is the file name in the archive.
	Name string
	// Read returns the content.
	Read func() ([]byte, error)
}

// MaxFileSize caps one file of the archive (the tail is kept).
const MaxFileSize = 8 << 20

// Archive returns the base64 text of a tar.gz holding every source, in
// name order, stamped with now.
func Archive(sources []Source, now time.Time) (string, error) {
	sort.SliceStable(sources, func(i, j int) bool { return sources[i].Name < sources[j].Name })
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, s := range sources {
		b, err := s.Read()
		if err != nil {
			b = append(b, []byte(fmt.Sprintf("\n[rivet-agent: could not collect %s: %v]\n", s.Name, err))...)
		}
		if len(b) > MaxFileSize {
			b = append([]byte("[truncated: the first bytes were dropped]\n"), b[len(b)-MaxFileSize:]...)
		}
		if err := tw.WriteHeader(&tar.Header{Name: s.Name, Mode: 0o644, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return "", fmt.Errorf("logcollect: %s: %w", s.Name, err)
		}
		if _, err := tw.Write(b); err != nil {
			return "", fmt.Errorf("logcollect: %s: %w", s.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("logcollect: %w", err)
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("logcollect: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}
