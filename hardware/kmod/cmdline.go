package kmod

import (
	"strings"
)

// ModuleOptions are what the kernel command line says about modules, as
// modprobe reads it.
type ModuleOptions struct {
	// Params are module options by module name: every name.param=value
	// word, joined with spaces per module, in command-line order.
	Params map[string]string
	// Blacklist are the modules of modprobe.blacklist= and
	// module_blacklist= (comma-separated lists; both may repeat).
	Blacklist []string
}

// ParseCmdline reads module options from a kernel command line
// (/proc/cmdline). Double quotes group a word with spaces, as the kernel
// parses them ("mod.opt=\"a b\"").
func ParseCmdline(cmdline string) ModuleOptions {
	o := ModuleOptions{Params: map[string]string{}}
	for _, w := range cmdlineWords(cmdline) {
		key, val, hasVal := strings.Cut(w, "=")
		if key == "modprobe.blacklist" || key == "module_blacklist" {
			for _, m := range strings.Split(val, ",") {
				if m != "" {
					o.Blacklist = append(o.Blacklist, ModuleName(m))
				}
			}
			continue
		}
		mod, param, ok := strings.Cut(key, ".")
		if !ok || mod == "" || param == "" || mod == "modprobe" {
			continue
		}
		opt := param
		if hasVal {
			if strings.ContainsAny(val, " \t") {
				val = `"` + val + `"`
			}
			opt += "=" + val
		}
		name := ModuleName(mod)
		if prev := o.Params[name]; prev != "" {
			opt = prev + " " + opt
		}
		o.Params[name] = opt
	}
	return o
}

// cmdlineWords splits a command line at blanks outside double quotes and
// drops the quotes.
func cmdlineWords(s string) []string {
	var words []string
	var b strings.Builder
	inQuote, inWord := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (c == ' ' || c == '\t' || c == '\n'):
			if inWord {
				words = append(words, b.String())
				b.Reset()
				inWord = false
			}
		default:
			b.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, b.String())
	}
	return words
}
