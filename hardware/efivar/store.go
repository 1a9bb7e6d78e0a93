package efivar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// GlobalGUID is EFI_GLOBAL_VARIABLE, the vendor GUID of Boot####,
// BootOrder and BootCurrent.
const GlobalGUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"

// DefaultDir is where efivarfs is mounted.
const DefaultDir = "/sys/firmware/efi/efivars"

// Variable attributes.
const (
	NonVolatile       = 0x00000001
	BootServiceAccess = 0x00000002
	RuntimeAccess     = 0x00000004
	// BootVarAttrs are the attributes of Boot#### and BootOrder.
	BootVarAttrs = NonVolatile | BootServiceAccess | RuntimeAccess
)

// ErrNotFound is returned for a variable that does not exist.
var ErrNotFound = errors.New("efivar: variable not found")

// Store is a directory laid out like efivarfs: one file per variable,
// named <Name>-<vendor GUID>, holding 4 bytes of attributes then the data.
type Store struct {
	// Dir is the efivarfs mount; "" means DefaultDir.
	Dir string
}

func (s Store) dir() string {
	if s.Dir == "" {
		return DefaultDir
	}
	return s.Dir
}

func (s Store) path(name, guid string) string {
	return filepath.Join(s.dir(), name+"-"+strings.ToLower(guid))
}

// Available reports whether the variable store can be read: the machine
// booted through UEFI and efivarfs is mounted.
func (s Store) Available() bool {
	ents, err := os.ReadDir(s.dir())
	return err == nil && len(ents) > 0
}

// Get reads a variable's attributes and data.
func (s Store) Get(name, guid string) (uint32, []byte, error) {
	b, err := os.ReadFile(s.path(name, guid))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil, fmt.Errorf("read %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("efivar: read %s: %w", name, err)
	}
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("efivar: %s has no attributes (%d bytes)", name, len(b))
	}
	return binary.LittleEndian.Uint32(b), b[4:], nil
}

// Set creates or replaces a variable. efivarfs needs the attributes and
// the data in a single write.
func (s Store) Set(name, guid string, attrs uint32, data []byte) error {
	p := s.path(name, guid)
	if err := makeMutable(p); err != nil {
		return fmt.Errorf("efivar: write %s: %w", name, err)
	}
	buf := binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(data)), attrs)
	buf = append(buf, data...)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("efivar: write %s: %w", name, err)
	}
	n, err := f.Write(buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != len(buf) {
		err = fmt.Errorf("short write (%d of %d bytes)", n, len(buf))
	}
	if err != nil {
		return fmt.Errorf("efivar: write %s: %w", name, err)
	}
	return nil
}

// Delete removes a variable; a missing one is not an error.
func (s Store) Delete(name, guid string) error {
	p := s.path(name, guid)
	if err := makeMutable(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("efivar: delete %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("efivar: delete %s: %w", name, err)
	}
	return nil
}

var bootVarName = regexp.MustCompile(`^Boot([0-9A-Fa-f]{4})-` + GlobalGUID + `$`)

// BootEntry is a decoded Boot#### variable.
type BootEntry struct {
	Num uint16
	LoadOption
}

// Name returns "Boot%04X".
func (e BootEntry) Name() string { return BootName(e.Num) }

// BootName returns the variable name of boot entry num.
func BootName(num uint16) string { return fmt.Sprintf("Boot%04X", num) }

// BootEntries lists every decodable Boot#### entry, by number.
func (s Store) BootEntries() ([]BootEntry, error) {
	ents, err := os.ReadDir(s.dir())
	if err != nil {
		return nil, fmt.Errorf("efivar: list %s: %w", s.dir(), err)
	}
	var out []BootEntry
	for _, e := range ents {
		m := bootVarName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		n, _ := strconv.ParseUint(m[1], 16, 16)
		_, data, err := s.Get("Boot"+m[1], GlobalGUID)
		if err != nil {
			return nil, err
		}
		opt, err := ParseLoadOption(data)
		if err != nil {
			continue // a foreign, malformed entry is not ours to judge
		}
		out = append(out, BootEntry{Num: uint16(n), LoadOption: opt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Num < out[j].Num })
	return out, nil
}

func parseU16s(b []byte) []uint16 {
	out := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		out = append(out, binary.LittleEndian.Uint16(b[i:]))
	}
	return out
}

// BootOrder returns the boot order; a missing variable is an empty order.
func (s Store) BootOrder() ([]uint16, error) {
	_, data, err := s.Get("BootOrder", GlobalGUID)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseU16s(data), nil
}

// SetBootOrder replaces the boot order.
func (s Store) SetBootOrder(order []uint16) error {
	b := make([]byte, 0, 2*len(order))
	for _, n := range order {
		b = binary.LittleEndian.AppendUint16(b, n)
	}
	return s.Set("BootOrder", GlobalGUID, BootVarAttrs, b)
}

// BootCurrent returns the entry the firmware booted this time.
func (s Store) BootCurrent() (uint16, error) {
	_, data, err := s.Get("BootCurrent", GlobalGUID)
	if err != nil {
		return 0, err
	}
	if len(data) < 2 {
		return 0, errors.New("efivar: BootCurrent too short")
	}
	return binary.LittleEndian.Uint16(data), nil
}

// AddBootEntry writes opt as the lowest free Boot#### and puts it first in
// BootOrder, as efibootmgr -c does. It returns the entry's number.
func (s Store) AddBootEntry(opt LoadOption) (uint16, error) {
	entries, err := s.BootEntries()
	if err != nil {
		return 0, err
	}
	used := map[uint16]bool{}
	for _, e := range entries {
		used[e.Num] = true
	}
	// Numbers taken by undecodable entries are taken too.
	if ents, err := os.ReadDir(s.dir()); err == nil {
		for _, e := range ents {
			if m := bootVarName.FindStringSubmatch(e.Name()); m != nil {
				n, _ := strconv.ParseUint(m[1], 16, 16)
				used[uint16(n)] = true
			}
		}
	}
	num := uint16(0)
	for used[num] {
		if num == 0xffff {
			return 0, errors.New("efivar: no free boot entry number")
		}
		num++
	}
	if err := s.Set(BootName(num), GlobalGUID, BootVarAttrs, opt.Marshal()); err != nil {
		return 0, err
	}
	order, err := s.BootOrder()
	if err != nil {
		return num, err
	}
	newOrder := append([]uint16{num}, without(order, num)...)
	if err := s.SetBootOrder(newOrder); err != nil {
		return num, err
	}
	return num, nil
}

// RemoveBootEntry deletes Boot#### and drops it from BootOrder.
func (s Store) RemoveBootEntry(num uint16) error {
	if err := s.Delete(BootName(num), GlobalGUID); err != nil {
		return err
	}
	order, err := s.BootOrder()
	if err != nil {
		return err
	}
	if trimmed := without(order, num); len(trimmed) != len(order) {
		return s.SetBootOrder(trimmed)
	}
	return nil
}

func without(order []uint16, num uint16) []uint16 {
	out := make([]uint16, 0, len(order))
	for _, n := range order {
		if n != num {
			out = append(out, n)
		}
	}
	return out
}
