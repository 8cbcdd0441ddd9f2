package api

import "github.com/autonomyops/orchestrator/api/wire"

// The JSON shapes of the REST API live in package api/wire, shared with the
// client (api/client). These aliases let the server and the node name them
// as api.Health and so on.
type (
	ErrorResponse     = wire.ErrorResponse
	Health            = wire.Health
	IngestResponse    = wire.IngestResponse
	Event             = wire.Event
	EventsResponse    = wire.EventsResponse
	WALStatus         = wire.WALStatus
	Frame             = wire.Frame
	InspectResponse   = wire.InspectResponse
	HAStatus          = wire.HAStatus
	LeaderRef         = wire.LeaderRef
	Member            = wire.Member
	Quorum            = wire.Quorum
	ReplicaHealth     = wire.ReplicaHealth
	FailoverRequest   = wire.FailoverRequest
	FailoverCandidate = wire.FailoverCandidate
	FailoverResponse  = wire.FailoverResponse
	FleetAgent        = wire.FleetAgent
	FleetSummary      = wire.FleetSummary
	Setting           = wire.Setting
	SettingsList      = wire.SettingsList
	SettingInfo       = wire.SettingInfo
	NodeSettings      = wire.NodeSettings
	AuditRecord       = wire.AuditRecord
	AuditResponse     = wire.AuditResponse
	EtcdView          = wire.EtcdView
	EtcdMember        = wire.EtcdMember
	MembersResponse   = wire.MembersResponse
	ClusterMember     = wire.ClusterMember
	AddMemberRequest  = wire.AddMemberRequest
	AddMemberResponse = wire.AddMemberResponse
)
