package publish

import (
	"testing"

	"github.com/heraldhq/herald/internal/config"
)

func TestDefaults_AreConfigs(t *testing.T) {
	var c Config
	c.setDefaults()
	if c.MaxBatch != config.DefaultCommitBatch || c.GatherWait != config.DefaultGatherWait {
		t.Errorf("zero Config takes %+v, not package config's defaults", c)
	}
}
