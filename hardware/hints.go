package hardware

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalidHints is wrapped by every root device hint validation error.
var ErrInvalidHints = errors.New("invalid root device hints")

type hintKind int

const (
	kindString hintKind = iota
	kindInt
	kindBool
)

// hintKinds lists every root device hint Ironic accepts and its type
// (contract §5.2); "tran" is accepted as the newest IPA does.
var hintKinds = map[string]hintKind{
	"model": kindString, "vendor": kindString, "serial": kindString,
	"wwn": kindString, "wwn_with_extension": kindString, "wwn_vendor_extension": kindString,
	"name": kindString, "hctl": kindString, "by_path": kindString, "tran": kindString,
	"size":       kindInt,
	"rotational": kindBool,
}

// operators of oslo.utils' specs matcher, longest first so that a prefix
// test finds "<=" before "<" and "s==" before "s=".
var operators = []string{"<all-in>", "<in>", "<or>", "s!=", "s<=", "s>=", "s==", "s<", "s>", "!=", "<=", ">=", "==", "<", ">", "="}

// Hints are parsed, validated root device hints. The zero value has no
// hints.
type Hints struct {
	items []hint
	raw   map[string]any
}

type hint struct {
	key    string
	kind   hintKind
	op     string   // "" for booleans
	values []string // normalized (lowercased, URL-quoted for strings)
	want   bool     // booleans
}

// ParseHints validates hints as Ironic would (unknown keys, wrong types,
// empty expressions and non-positive sizes are errors) and normalizes them.
func ParseHints(raw map[string]any) (Hints, error) {
	h := Hints{raw: raw}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var unknown []string
	for _, k := range keys {
		if _, ok := hintKinds[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		valid := make([]string, 0, len(hintKinds))
		for k := range hintKinds {
			valid = append(valid, k)
		}
		sort.Strings(valid)
		return h, fmt.Errorf("%w: the hints %q are invalid; valid hints are %s",
			ErrInvalidHints, strings.Join(unknown, ", "), strings.Join(valid, ", "))
	}
	for _, k := range keys {
		it, err := parseHint(k, hintKinds[k], raw[k])
		if err != nil {
			return h, err
		}
		h.items = append(h.items, it)
	}
	return h, nil
}

func parseHint(key string, kind hintKind, v any) (hint, error) {
	it := hint{key: key, kind: kind}
	switch kind {
	case kindBool:
		b, err := parseBool(v)
		if err != nil {
			return it, fmt.Errorf("%w: root device hint %q is not a Boolean value: %v", ErrInvalidHints, key, v)
		}
		it.want = b
		return it, nil
	case kindString:
		s, ok := v.(string)
		if !ok {
			return it, fmt.Errorf("%w: root device hint %q is not a string value: %v", ErrInvalidHints, key, v)
		}
		op, vals, err := splitExpression(s)
		if err != nil {
			return it, fmt.Errorf("%w: root device hint %q: %v", ErrInvalidHints, key, err)
		}
		if op == "" {
			op = "s=="
		}
		if key == "name" || key == "by_path" {
			prefix := "/dev/"
			if key == "by_path" {
				prefix = "/dev/disk/by-path/"
			}
			for i, x := range vals {
				if !strings.HasPrefix(x, "/dev/") {
					vals[i] = prefix + x
				}
			}
		}
		for i, x := range vals {
			vals[i] = quote(x)
		}
		it.op, it.values = op, vals
		return it, nil
	default: // kindInt
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64:
			if x != math.Trunc(x) {
				return it, fmt.Errorf("%w: root device hint %q is not an integer value: %v", ErrInvalidHints, key, v)
			}
			s = strconv.FormatInt(int64(x), 10)
		case int:
			s = strconv.Itoa(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		default:
			return it, fmt.Errorf("%w: root device hint %q is not an integer value: %v", ErrInvalidHints, key, v)
		}
		op, vals, err := splitExpression(s)
		if err != nil {
			return it, fmt.Errorf("%w: root device hint %q: %v", ErrInvalidHints, key, err)
		}
		for _, x := range vals {
			n, err := strconv.Atoi(x)
			if err != nil {
				return it, fmt.Errorf("%w: root device hint %q is not an integer value: %s", ErrInvalidHints, key, s)
			}
			if n <= 0 {
				return it, fmt.Errorf("%w: root device hint %q should be a positive integer: %s", ErrInvalidHints, key, s)
			}
		}
		if op == "" {
			op = "=="
		}
		if strings.HasPrefix(op, "s") || op == "<in>" || op == "<all-in>" {
			return it, fmt.Errorf("%w: root device hint %q: operator %s needs a string hint", ErrInvalidHints, key, op)
		}
		it.op, it.values = op, vals
		return it, nil
	}
}

// splitExpression lowercases a hint expression and splits it into its
// operator ("" when none) and its values.
func splitExpression(s string) (string, []string, error) {
	e := strings.ToLower(strings.TrimSpace(s))
	if e == "" {
		return "", nil, errors.New("expression is empty")
	}
	op := ""
	for _, o := range operators {
		if strings.HasPrefix(e, o) {
			op = o
			break
		}
	}
	if op == "" {
		return "", []string{e}, nil
	}
	var vals []string
	for _, part := range strings.Split(e[len(op):], op) {
		if p := strings.TrimSpace(part); p != "" {
			vals = append(vals, p)
		}
	}
	if len(vals) == 0 {
		return "", nil, fmt.Errorf("operator %s has no value", op)
	}
	if op != "<or>" && op != "<all-in>" && len(vals) > 1 {
		return "", nil, fmt.Errorf("operator %s takes one value, got %q", op, s)
	}
	if op == "<all-in>" {
		// <all-in> takes whitespace-separated words.
		vals = strings.Fields(strings.Join(vals, " "))
	}
	return op, vals, nil
}

// quote URL-quotes a value as Python's urllib.parse.quote does (safe "/").
func quote(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), "%2F", "/")
}

func parseBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "1", "t", "true", "on", "y", "yes":
			return true, nil
		case "0", "f", "false", "off", "n", "no":
			return false, nil
		}
	case float64:
		if x == 1 {
			return true, nil
		} else if x == 0 {
			return false, nil
		}
	case int:
		if x == 1 || x == 0 {
			return x == 1, nil
		}
	}
	return false, fmt.Errorf("not a Boolean: %v", v)
}

// Empty reports whether there are no hints.
func (h Hints) Empty() bool { return len(h.items) == 0 }

// String renders the hints as given, for messages.
func (h Hints) String() string {
	keys := make([]string, 0, len(h.raw))
	for k := range h.raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, h.raw[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Match reports whether the device satisfies every hint.
func (h Hints) Match(d BlockDevice) bool {
	for _, it := range h.items {
		if !it.match(d) {
			return false
		}
	}
	return true
}

func (it hint) match(d BlockDevice) bool {
	switch it.kind {
	case kindBool:
		return d.Rotational == it.want
	case kindInt:
		return matchNumber(float64(d.Size)/GiB, it.op, it.values)
	}
	v := deviceString(d, it.key)
	if v == "" {
		return false // IPA skips devices lacking the attribute
	}
	return matchString(quote(strings.ToLower(v)), it.op, it.values)
}

func deviceString(d BlockDevice, key string) string {
	switch key {
	case "model":
		return d.Model
	case "vendor":
		return d.Vendor
	case "serial":
		return d.Serial
	case "wwn":
		return d.WWN
	case "wwn_with_extension":
		return d.WWNWithExt
	case "wwn_vendor_extension":
		return d.WWNVendExt
	case "name":
		return d.Path
	case "hctl":
		return d.HCTL
	case "by_path":
		return d.ByPath
	case "tran":
		return d.Tran
	}
	return ""
}

func matchNumber(v float64, op string, vals []string) bool {
	if op == "<or>" {
		for _, x := range vals {
			if f, _ := strconv.ParseFloat(x, 64); f == v {
				return true
			}
		}
		return false
	}
	want, _ := strconv.ParseFloat(vals[0], 64)
	switch op {
	case "==":
		return v == want
	case "!=":
		return v != want
	case ">=", "=": // "=" is oslo's legacy spelling of >=
		return v >= want
	case ">":
		return v > want
	case "<=":
		return v <= want
	case "<":
		return v < want
	}
	return false
}

func matchString(v, op string, vals []string) bool {
	switch op {
	case "<or>":
		for _, x := range vals {
			if v == x {
				return true
			}
		}
		return false
	case "<all-in>":
		for _, x := range vals {
			if !strings.Contains(v, x) {
				return false
			}
		}
		return true
	case "<in>":
		return strings.Contains(v, vals[0])
	case "s==":
		return v == vals[0]
	case "s!=":
		return v != vals[0]
	case "s<":
		return v < vals[0]
	case "s<=":
		return v <= vals[0]
	case "s>":
		return v > vals[0]
	case "s>=":
		return v >= vals[0]
	}
	// A numeric operator on a string hint compares as numbers, as oslo does.
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return false
	}
	return matchNumber(f, op, vals)
}
