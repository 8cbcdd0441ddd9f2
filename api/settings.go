package api

import (
	"errors"
	"net/http"

	"github.com/autonomyops/orchestrator/settings"
	"github.com/gin-gonic/gin"
)

// SettingInfos converts a settings resolution to the API shape.
func SettingInfos(r settings.Resolution) []SettingInfo {
	out := make([]SettingInfo, 0, len(r.Infos))
	for _, inf := range r.Infos {
		out = append(out, SettingInfo{Key: inf.Spec.Key, Value: inf.Value, Default: inf.Default, Source: inf.Source,
			Revision: inf.Revision, Type: inf.Spec.Kind.String(), Bounds: inf.Spec.Bounds(), Flag: inf.Spec.Flag,
			Help: inf.Spec.Help, Refused: inf.Refused})
	}
	return out
}

// nodeSettings answers, on every node, the settings that node applies.
func (s *Server) nodeSettings(c *gin.Context) {
	r, rev := s.cfg.Settings.Resolution()
	c.JSON(http.StatusOK, NodeSettings{Node: s.b.Node.NodeName(), Revision: rev, Settings: SettingInfos(r), Unknown: r.Unknown})
}

// resolveStored resolves what etcd stores against this node's defaults.
func (s *Server) resolveStored(list []Setting) settings.Resolution {
	stored := make(map[string]settings.Stored, len(list))
	for _, st := range list {
		stored[st.Key] = settings.Stored{Value: st.Value, Revision: st.Revision}
	}
	return settings.Resolve(s.cfg.Settings.Defaults(), stored)
}

// settingRefused answers 400 to a write the schema refuses, listing every
// key with its bounds. Nothing was written.
func (s *Server) settingRefused(c *gin.Context, err error) {
	code := "bad_setting"
	if errors.Is(err, settings.ErrUnknownKey) {
		code = "unknown_setting"
	}
	r, _ := s.cfg.Settings.Resolution()
	c.AbortWithStatusJSON(http.StatusBadRequest, ErrorResponse{Error: code,
		Message:  err.Error() + "; nothing was written. The settings are:\n" + settings.Describe(),
		Settings: SettingInfos(r)})
}
