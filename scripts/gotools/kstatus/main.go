// Command kstatus prints what sigs.k8s.io/cli-utils/pkg/kstatus/status computes for one
// Kubernetes object: the status Flux's health checks (Kustomization `wait` and
// `healthChecks`) and `kubectl wait`-style tooling read.
//
//	kstatus < OBJECT.yaml
//
// The object is read from stdin as YAML or JSON. The answer is one line of JSON on stdout:
// {"status": "Current|InProgress|Failed|Terminating|Unknown", "message": "..."}. Exit
// status 1 (with the reason on stderr) when the input is not one object or kstatus refuses
// it. A test helper of binauthz-operator: it adds nothing to the library.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	doc, err := yaml.ToJSON(raw)
	if err != nil {
		return fmt.Errorf("stdin is not YAML or JSON: %w", err)
	}
	// The unstructured decoder keeps integers as int64, as kstatus reads them (plain
	// encoding/json would give float64 and kstatus would refuse metadata.generation).
	var object unstructured.Unstructured
	if err := object.UnmarshalJSON(doc); err != nil {
		return fmt.Errorf("stdin is not one Kubernetes object: %w", err)
	}
	result, err := status.Compute(&object)
	if err != nil {
		return fmt.Errorf("kstatus: %w", err)
	}
	return json.NewEncoder(out).Encode(verdict{Status: result.Status.String(), Message: result.Message})
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}
