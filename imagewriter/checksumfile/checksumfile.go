// Package checksumfile finds an image's checksum in a checksum file, in
// every format Ironic's agent accepts (contract §6.2): a bare hash, GNU
// coreutils lines ("hash  name", "hash *name") and BSD/CentOS lines
// ("SHA256 (name) = hash"). It is a pure parser over an io.Reader.
package checksumfile

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// MaxSize is the largest checksum file Parse reads.
const MaxSize = 4 << 20

// ErrNotFound is returned when the file holds no checksum for the name.
var ErrNotFound = errors.New("no checksum for the image in the checksum file")

// Entry is one checksum found in the file.
type Entry struct {
	// Algo is the lowercase algorithm the line names ("sha256"), or ""
	// when the format does not say (the caller infers it from the length).
	Algo string
	// Value is the lowercase hex digest.
	Value string
}

// Parse reads a checksum file and returns the checksum for the file named
// name (compared by base name, so "./img.qcow2" and "img.qcow2" match). A
// file that holds nothing but one hash is that hash, whatever the name.
func Parse(r io.Reader, name string) (Entry, error) {
	base := path.Base(strings.TrimSpace(name))
	sc := bufio.NewScanner(io.LimitReader(r, MaxSize+1))
	sc.Buffer(make([]byte, 0, 4096), MaxSize+1)
	var lines []string
	read := 0
	for sc.Scan() {
		read += len(sc.Bytes()) + 1
		if read > MaxSize+1 {
			return Entry{}, fmt.Errorf("checksum file is larger than %d bytes", MaxSize)
		}
		line := strings.TrimSpace(strings.TrimPrefix(sc.Text(), "\ufeff"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return Entry{}, fmt.Errorf("reading checksum file: %w", err)
	}
	if len(lines) == 1 && isHex(lines[0]) {
		return Entry{Value: strings.ToLower(lines[0])}, nil
	}
	for _, line := range lines {
		e, file, ok := parseLine(line)
		if ok && path.Base(file) == base {
			return e, nil
		}
	}
	return Entry{}, fmt.Errorf("%w: %q", ErrNotFound, base)
}

// parseLine parses one GNU or BSD line.
func parseLine(line string) (Entry, string, bool) {
	// BSD / CentOS: ALGO (name) = hash
	if open := strings.Index(line, " ("); open > 0 {
		if closeAt := strings.LastIndex(line, ") = "); closeAt > open {
			algo := line[:open]
			file := line[open+2 : closeAt]
			sum := strings.TrimSpace(line[closeAt+4:])
			if isHex(sum) && isAlgoName(algo) {
				return Entry{Algo: normalizeAlgo(algo), Value: strings.ToLower(sum)}, file, true
			}
		}
	}
	// GNU: hash  name, hash *name (binary mode), hash name
	sum, rest, ok := strings.Cut(line, " ")
	if !ok || !isHex(sum) {
		return Entry{}, "", false
	}
	file := strings.TrimLeft(rest, " ")
	file = strings.TrimPrefix(file, "*")
	if file == "" {
		return Entry{}, "", false
	}
	return Entry{Value: strings.ToLower(sum)}, file, true
}

func isHex(s string) bool {
	if len(s) < 8 || len(s)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func isAlgoName(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// normalizeAlgo maps "SHA256", "SHA-256", "sha2-256"-ish spellings to
// hashlib names.
func normalizeAlgo(s string) string {
	s = strings.ToLower(s)
	s = strings.ReplaceAll(s, "-", "")
	s = strings.ReplaceAll(s, "_", "")
	return s
}
