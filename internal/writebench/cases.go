package writebench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/rivetmetal/rivet/internal/osimage"
)

// Variant names an image file the benchmark serves: the raw disk, and the
// forms osimage derives from it, named by their file suffix.
type Variant = osimage.Variant

// The variants.
const (
	Raw       Variant = "raw"
	Gzip              = osimage.Gzip
	Zstd              = osimage.Zstd
	Xz                = osimage.Xz
	Qcow2             = osimage.Qcow2
	Qcow2Zlib         = osimage.Qcow2Zlib
)

// Variants lists every variant, raw first.
var Variants = []Variant{Raw, Gzip, Zstd, Xz, Qcow2, Qcow2Zlib}

// decodeFormat is the format name the agent-side child decodes variant v
// as ("" for raw).
func decodeFormat(v Variant) string {
	return map[Variant]string{Gzip: "gzip", Zstd: "zstd", Xz: "xz", Qcow2: "qcow2", Qcow2Zlib: "qcow2"}[v]
}

// Case is one way the agent writes the image.
type Case struct {
	// ID is a short name for selecting the case (profiles).
	ID string
	// Name is the table's label.
	Name string
	// Variant is the file served.
	Variant Variant
	// Algo is the checksum algorithm verified.
	Algo string
	// Disks is how many devices are written at once (1 or 3).
	Disks int
	// NoZeroSkip writes zero runs as data.
	NoZeroSkip bool
}

// Cases are the agent's runs, in table order.
var Cases = []Case{
	{ID: "raw", Name: "raw", Variant: Raw, Algo: "sha256", Disks: 1},
	{ID: "raw-zeros", Name: "raw, zero runs written", Variant: Raw, Algo: "sha256", Disks: 1, NoZeroSkip: true},
	{ID: "raw-sha512", Name: "raw, sha512", Variant: Raw, Algo: "sha512", Disks: 1},
	{ID: "raw-md5", Name: "raw, md5", Variant: Raw, Algo: "md5", Disks: 1},
	{ID: "gz", Name: "raw.gz", Variant: Gzip, Algo: "sha256", Disks: 1},
	{ID: "zst", Name: "raw.zst", Variant: Zstd, Algo: "sha256", Disks: 1},
	{ID: "xz", Name: "raw.xz", Variant: Xz, Algo: "sha256", Disks: 1},
	{ID: "qcow2", Name: "qcow2", Variant: Qcow2, Algo: "sha256", Disks: 1},
	{ID: "qcow2c", Name: "qcow2, zlib-compressed clusters", Variant: Qcow2Zlib, Algo: "sha256", Disks: 1},
	{ID: "fanout", Name: "raw → 3 disks", Variant: Raw, Algo: "sha256", Disks: 3},
	{ID: "fanout-zeros", Name: "raw, zero runs written → 3 disks", Variant: Raw, Algo: "sha256", Disks: 3, NoZeroSkip: true},
}

// DefaultProfileCases are the cases profiled when profiling is asked for
// without a list.
var DefaultProfileCases = []string{"raw", "raw-zeros", "raw-sha512", "gz", "zst", "xz", "qcow2", "qcow2c", "fanout"}

// SelectCases returns the cases of ids in table order, with the
// single-disk case of every fan-out case among them (the fan-out table
// sets one against the other); no IDs select every case. IDs are read as
// CheckIDs reads them.
func SelectCases(ids []string) ([]Case, error) {
	ids, err := CheckIDs(ids)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return slices.Clone(Cases), nil
	}
	want := map[string]bool{}
	for _, id := range ids {
		c, _ := caseByID(id)
		want[id] = true
		if one, ok := c.oneDisk(); ok {
			want[one.ID] = true
		}
	}
	var out []Case
	for _, c := range Cases {
		if want[c.ID] {
			out = append(out, c)
		}
	}
	return out, nil
}

// CheckIDs returns the case IDs of ids with surrounding spaces and empty
// entries dropped (so "gz, zst," names two cases), or an error naming an
// unknown ID and the known ones.
func CheckIDs(ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		if _, ok := caseByID(id); !ok {
			return nil, fmt.Errorf("writebench: no case %q (the cases are %s)", id, strings.Join(caseIDs(Cases), ", "))
		}
		out = append(out, id)
	}
	return out, nil
}

// caseIDs lists the cases' IDs.
func caseIDs(cs []Case) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids
}

// caseByID finds a case by its ID.
func caseByID(id string) (Case, bool) {
	i := slices.IndexFunc(Cases, func(c Case) bool { return c.ID == id })
	if i < 0 {
		return Case{}, false
	}
	return Cases[i], true
}

// oneDisk is the single-disk case doing the same job as a fan-out case.
func (c Case) oneDisk() (Case, bool) {
	if c.Disks == 1 {
		return c, false
	}
	for _, o := range Cases {
		if o.Disks == 1 && o.Variant == c.Variant && o.Algo == c.Algo && o.NoZeroSkip == c.NoZeroSkip {
			return o, true
		}
	}
	return Case{}, false
}
