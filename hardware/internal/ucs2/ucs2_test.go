package ucs2

import "testing"

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte{'E', 0, 'F', 0, 'I', 0, 0, 0, 'x', 0}, "EFI"},
		{[]byte{'a', 0, 'b', 0}, "ab"},
		{[]byte{'a', 0, 'b'}, "a"},
		{[]byte{0x3d, 0xd8, 0x00, 0xde}, "\U0001F600"}, // a surrogate pair
		{nil, ""},
	} {
		if got := Decode(tc.in); got != tc.want {
			t.Errorf("Decode(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
