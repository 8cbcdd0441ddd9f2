// Package monitoring holds no code: it is the monitoring pack for the
// AutonomyOps HA orchestrator, installed by the packages to
// /usr/share/autonomy/monitoring/ (see README.md):
//
//	prometheus/autonomy-alerts.yml       alert rules
//	prometheus/autonomy-alerts.test.yml  their promtool unit tests
//	grafana/autonomy-cluster.json        a Grafana dashboard of one cluster
//
// Its tests check that every alert has a unit test that fires it and one that
// does not, that the rules and the dashboard use only metric names the
// binaries export, and, when promtool is installed, run `promtool check
// rules` and `promtool test rules`.
package monitoring
