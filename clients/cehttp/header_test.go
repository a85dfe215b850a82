package cehttp

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncodeHeaderValue(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"spec example", "Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"},
		{"plain ASCII unchanged", "com.example.order.created", "com.example.order.created"},
		{"empty", "", ""},
		{"space quote percent", `a "b" 100%`, "a%20%22b%22%20100%25"},
		{"control characters", "a\r\nb\tc\x00\x7f", "a%0D%0Ab%09c%00%7F"},
		{"printable punctuation kept", "!#$&'()*+,-./:;<=>?@[\\]^_`{|}~", "!#$&'()*+,-./:;<=>?@[\\]^_`{|}~"},
		{"U+0080 and U+009F", "\u0080\u009f", "%C2%80%C2%9F"},
		{"invalid UTF-8 bytes encoded as bytes", "\xff\xfe", "%FF%FE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EncodeHeaderValue(tt.in); got != tt.want {
				t.Errorf("EncodeHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestEncodeHeaderValue_CleanValueDoesNotAllocate(t *testing.T) {
	s := strings.Repeat("abc", 10)
	if n := testing.AllocsPerRun(100, func() { _ = EncodeHeaderValue(s) }); n != 0 {
		t.Errorf("allocations = %v, want 0", n)
	}
}

func TestDecodeHeaderValue(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"spec example", "Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"},
		{"lower-case hex accepted", "Euro%20%e2%82%ac%20%f0%9f%98%80", "Euro € 😀"},
		{"plain", "com.example", "com.example"},
		{"empty", "", ""},
		{"quoted-string unquoted first", `"Euro%20%E2%82%AC"`, "Euro €"},
		{"quoted-pair", `"a\"b\\c"`, `a"b\c`},
		{"quoted empty", `""`, ""},
		{"only one round of decoding", "%2520", "%20"},
		{"quoted then percent-decoded once", `"%2541"`, "%41"},
		{"raw valid UTF-8 accepted", "Euro €", "Euro €"},
		// Senders that do not percent-encode (sdk-go among them): a '%'
		// that starts no escape is literal, valid escapes still decode.
		{"bare percent before a space", "100% sure", "100% sure"},
		{"percent at end", "abc%", "abc%"},
		{"one hex digit at end", "abc%4", "abc%4"},
		{"non-hex digits", "%zz", "%zz"},
		{"half non-hex", "%4g", "%4g"},
		{"bare percent then a valid escape", "50%%20off", "50% off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeHeaderValue(tt.in)
			if err != nil {
				t.Fatalf("DecodeHeaderValue(%q) error: %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("DecodeHeaderValue(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeHeaderValue_Rejects(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"overlong encoding of space", "%C0%A0"},
		{"lone continuation byte", "%80"},
		{"truncated sequence", "%E2%82"},
		{"encoded surrogate", "%ED%A0%80"},
		{"raw invalid UTF-8", "\xff"},
		{"bare percent then invalid UTF-8", "100%\xff"},
		{"unterminated quoted-string", `"abc`},
		{"lone quote", `"`},
		{"quote inside quoted-string", `"a"b"`},
		{"trailing backslash", `"abc\"`},
		{"control character in quoted-string", "\"a\x01b\""},
		{"invalid UTF-8 after unquoting", `"%C0%A0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := DecodeHeaderValue(tt.in); err == nil {
				t.Errorf("DecodeHeaderValue(%q) = %q, want error", tt.in, got)
			}
		})
	}
}

func TestHeaderValue_RoundTrip(t *testing.T) {
	for _, s := range []string{"", "Euro € 😀", `"quoted"`, "100%", "tab\tnew\nline", "\x00", "日本語", "a\\b"} {
		enc := EncodeHeaderValue(s)
		for i := 0; i < len(enc); i++ {
			if mustEscape(enc[i]) && enc[i] != '%' {
				t.Errorf("EncodeHeaderValue(%q) = %q holds byte %#x", s, enc, enc[i])
			}
		}
		got, err := DecodeHeaderValue(enc)
		if err != nil || got != s {
			t.Errorf("DecodeHeaderValue(EncodeHeaderValue(%q)) = %q, %v", s, got, err)
		}
	}
}

func FuzzDecodeHeaderValue(f *testing.F) {
	for _, s := range []string{"Euro%20%E2%82%AC%20%F0%9F%98%80", "%C0%A0", `"a\"b"`, "%", "%%41", "\xff", "plain", `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := DecodeHeaderValue(s) // must not panic
		if err == nil && !utf8.ValidString(got) {
			t.Fatalf("DecodeHeaderValue(%q) = %q: invalid UTF-8 accepted", s, got)
		}
		if !utf8.ValidString(s) {
			return
		}
		enc := EncodeHeaderValue(s)
		dec, err := DecodeHeaderValue(enc)
		if err != nil {
			t.Fatalf("DecodeHeaderValue(EncodeHeaderValue(%q)) error: %v", s, err)
		}
		if dec != s {
			t.Fatalf("DecodeHeaderValue(EncodeHeaderValue(%q)) = %q", s, dec)
		}
	})
}

func BenchmarkEncodeHeaderValue(b *testing.B) {
	for _, bm := range []struct{ name, in string }{
		{"ASCII", "com.example.order.created"},
		{"NonASCII", "Euro € 😀 order 12345"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = EncodeHeaderValue(bm.in)
			}
		})
	}
}
