// Command patternmatcher-diff answers .dockerignore matching questions with Docker's own
// github.com/moby/patternmatcher, for rbuild's differential test
// (builder/tests/dockerignore_differential.rs).
//
// Input (stdin): a JSON array of {"patterns": [...], "paths": [...]}.
// Output (stdout): a JSON array of {"error": bool, "or": [...], "parent": [...]} where "or" is
// MatchesOrParentMatches(path) and "parent" is MatchesUsingParentResults fed, as BuildKit's
// walker does, the MatchInfo of each parent directory in turn.
//
// "error" is true when New fails or when any pattern fails to compile. Go compiles patterns
// lazily, so each pattern is forced to compile by matching it on its own first.
package main

import (
	"encoding/json"
	"os"
	"strings"

	"github.com/moby/patternmatcher"
)

type query struct {
	Patterns []string `json:"patterns"`
	Paths    []string `json:"paths"`
}

type answer struct {
	Error  bool   `json:"error"`
	Or     []bool `json:"or"`
	Parent []bool `json:"parent"`
}

// compiles reports whether every pattern of pm compiles.
func compiles(pm *patternmatcher.PatternMatcher) bool {
	for _, p := range pm.Patterns() {
		list := []string{p.String()}
		if p.Exclusion() {
			// An exception is only evaluated once something matched: put "**" first.
			list = []string{"**", "!" + p.String()}
		}
		probe, err := patternmatcher.New(list)
		if err != nil {
			return false
		}
		if _, err := probe.MatchesOrParentMatches("a"); err != nil {
			return false
		}
	}
	return true
}

func main() {
	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		panic(err)
	}
	answers := make([]answer, 0, len(queries))
	for _, q := range queries {
		pm, err := patternmatcher.New(q.Patterns)
		if err != nil || !compiles(pm) {
			answers = append(answers, answer{Error: true})
			continue
		}
		a := answer{Or: []bool{}, Parent: []bool{}}
		for _, path := range q.Paths {
			or, err := pm.MatchesOrParentMatches(path)
			if err != nil {
				panic(err)
			}
			a.Or = append(a.Or, or)
			info := patternmatcher.MatchInfo{}
			var res bool
			segs := strings.Split(path, "/")
			for i := range segs {
				res, info, err = pm.MatchesUsingParentResults(strings.Join(segs[:i+1], "/"), info)
				if err != nil {
					panic(err)
				}
			}
			a.Parent = append(a.Parent, res)
		}
		answers = append(answers, a)
	}
	if err := json.NewEncoder(os.Stdout).Encode(answers); err != nil {
		panic(err)
	}
}
