package kmod

// match reports whether s matches the shell pattern p as fnmatch(3) does
// without flags (what kmod uses for modules.alias): '*' matches any run of
// bytes (including '/'), '?' any one byte, '[...]' a set with ranges and
// '!' or '^' negation, and '\' quotes the next byte. A malformed set
// ("[abc") matches a literal '['.
func match(p, s string) bool {
	// Iterative matching with one backtrack point for the last '*':
	// linear in practice, never exponential.
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		if px < len(p) {
			switch c := p[px]; c {
			case '*':
				starP, starS = px, sx
				px++
				continue
			case '?':
				px++
				sx++
				continue
			case '[':
				if ok, n, valid := matchSet(p[px:], s[sx]); valid {
					if ok {
						px += n
						sx++
						continue
					}
				} else if s[sx] == '[' {
					px++
					sx++
					continue
				}
			case '\\':
				if px+1 < len(p) && p[px+1] == s[sx] {
					px += 2
					sx++
					continue
				}
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		px, sx = starP+1, starS
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// matchSet matches b against the set at the start of p ("[...]"). It
// returns whether b is in the set, the length of the set in p, and whether
// the set is well formed.
func matchSet(p string, b byte) (ok bool, n int, valid bool) {
	i := 1
	negate := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		negate = true
		i++
	}
	first := true
	for i < len(p) {
		c := p[i]
		if c == ']' && !first {
			return ok != negate, i + 1, true
		}
		first = false
		lo := c
		i++
		if lo == '\\' && i < len(p) {
			lo = p[i]
			i++
		}
		hi := lo
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi = p[i+1]
			i += 2
			if hi == '\\' && i < len(p) {
				hi = p[i]
				i++
			}
		}
		if lo <= b && b <= hi {
			ok = true
		}
	}
	return false, 0, false
}
