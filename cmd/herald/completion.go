package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/heraldhq/herald/internal/cli"
)

// commands are herald's commands and their verbs, for completion.
var commands = map[string][]string{
	"dev": nil, "serve": nil, "bench": nil, "listen": nil,
	"encryption": {"new-key", "rotate"}, "temporal": {"setup"}, "config": {"check"}, "migrate": {"status", "up"},
	"completion": {"bash"},
}

// runCompletion prints a bash completion script: source it, e.g.
// `source <(herald completion bash)`.
func runCompletion(args []string) error {
	if len(args) != 1 || args[0] != "bash" {
		return usageError("usage: herald completion bash")
	}
	verbs := map[string][]string{}
	for k, v := range commands {
		verbs[k] = v
	}
	for noun, vs := range cli.Verbs() {
		verbs[noun] = vs
	}
	nouns := slices.Sorted(maps.Keys(verbs))
	var cases strings.Builder
	for _, noun := range nouns {
		if vs := verbs[noun]; len(vs) > 0 {
			fmt.Fprintf(&cases, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", noun, strings.Join(vs, " "))
		}
	}
	fmt.Printf(`_herald() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W %q -- "$cur")); return
  fi
  if [ "$COMP_CWORD" -eq 2 ]; then
    case "${COMP_WORDS[1]}" in
%s    esac
  fi
}
complete -F _herald herald
`, strings.Join(nouns, " "), cases.String())
	return nil
}
