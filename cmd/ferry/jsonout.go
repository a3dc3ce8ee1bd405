package main

import (
	"bytes"
	"encoding/json"
	"os"
)

// Every JSON object ferry prints carries a message_type, as restic's
// scripting contract has it: "summary" for a command's result,
// "verbose_status" for each element of a listing, "status" for progress,
// "error" for an error it goes on after, "exit_error" for the one it stops
// on.

// withMessageType is v as JSON, its objects marked.
func withMessageType(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(b) == 0 {
		return b, err
	}
	switch b[0] {
	case '{':
		return markObject(b, "summary"), nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(b, &elems); err != nil {
			return nil, err
		}
		for i, e := range elems {
			if len(e) > 0 && e[0] == '{' {
				elems[i] = markObject(e, "verbose_status")
			}
		}
		return json.Marshal(elems)
	}
	return b, nil
}

// markObject puts "message_type":kind first in a JSON object that has no
// message_type of its own there.
func markObject(obj []byte, kind string) []byte {
	if bytes.HasPrefix(obj, []byte(`{"message_type"`)) {
		return obj
	}
	out := make([]byte, 0, len(obj)+len(kind)+20)
	out = append(out, `{"message_type":"`...)
	out = append(out, kind...)
	out = append(out, '"')
	if !bytes.Equal(obj, []byte("{}")) {
		out = append(out, ',')
	}
	return append(out, obj[1:]...)
}

// wantsJSON reports --json among the arguments, before cobra has parsed
// them: an error in an argument before --json is still printed as JSON.
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return os.Getenv("FERRY_JSON") == "1" || os.Getenv("FERRY_JSON") == "true"
}
