package workflows

import (
	"testing"

	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplay replays histories recorded from real runs (herald dev) against
// the current workflow code. A change that breaks determinism, and so
// would break every delivery in flight during a deploy, fails here.
//
// To record a new history: run the scenario under `herald dev`, then fetch
// it with the Temporal CLI (temporal workflow show --output json) or
// client.GetWorkflowHistory, and save it to testdata/.
func TestReplay(t *testing.T) {
	tests := []struct {
		file string
		wf   any
		name string
	}{
		// Dead-lettered (400), redriven, retried after 500s, delivered.
		{"testdata/delivery_dead_redriven_retried_delivered.json", Delivery, DeliveryWorkflowName},
		// Granted in the OPTIONS response.
		{"testdata/handshake_granted.json", Handshake, HandshakeWorkflowName},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(tt.wf, workflow.RegisterOptions{Name: tt.name})
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, tt.file); err != nil {
				t.Fatal(err)
			}
		})
	}
}
