package dispatch

import (
	"testing"

	"github.com/heraldhq/herald/internal/config"
	"github.com/heraldhq/herald/internal/policy"
)

func TestDefaults_AreConfigs(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.BatchSize != config.DefaultClaimBatch || c.Queue != config.DefaultQueue || c.Lease != config.DefaultLease || c.LeaseRenew != config.DefaultLeaseRenew ||
		c.RequestTimeout != policy.RequestTimeout || c.Handoffs != config.DefaultHandoffs ||
		c.HandoffQueue != config.DefaultHandoffQueue || c.PollInterval != config.DefaultPollInterval ||
		c.RecordWait != config.DefaultRecordWait {
		t.Errorf("zero Config takes %+v, not package config's defaults", c)
	}
}
