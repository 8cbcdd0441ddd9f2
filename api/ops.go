package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/autonomyops/orchestrator/settings"
	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/gin-gonic/gin"
)

func (s *Server) replicaHealth(c *gin.Context) {
	maxLag := uint64(0)
	if v := c.Query("max_lag"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(c, http.StatusBadRequest, "bad_query", fmt.Sprintf("max_lag=%q is not a non-negative integer", v))
			return
		}
		maxLag = n
	}
	h, ok := s.b.Cluster.ReplicaHealth(maxLag)
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, h)
}

// logs streams committed events as NDJSON, following the log with
// follow=true until the client goes or this node stops leading (the client
// then reconnects to the new leader with after_seq).
func (s *Server) logs(c *gin.Context) {
	q, err := parseFrameQuery(c, 10000)
	if err != nil {
		writeError(c, http.StatusBadRequest, "bad_query", err.Error())
		return
	}
	follow := c.Query("follow") == "true" || c.Query("follow") == "1"
	w := s.b.Log
	c.Header("Content-Type", wire.ContentTypeNDJSON)
	c.Header("Cache-Control", "no-cache")
	c.Status(http.StatusOK)
	bw := bufio.NewWriter(c.Writer)
	enc := json.NewEncoder(bw)
	ctx := c.Request.Context()
	const keepaliveEvery = 5 * time.Second
	keepalive := time.NewTicker(keepaliveEvery / 5)
	defer keepalive.Stop()
	lastWrite := time.Now()
	for {
		changed := w.Changed()
		sent := 0
		safe, err := scanCommitted(w, &q, func(f *walrepl.Frame) bool {
			if f.Type == walrepl.FrameEvent {
				enc.Encode(Event{Seq: f.Seq, Epoch: f.Epoch, TS: time.Unix(0, f.Time).UTC(), Event: json.RawMessage(f.Payload)})
				sent++
			}
			return true
		})
		// The scan covered everything up to the safe_seq it read, matched
		// by the filter or not: the cursor moves past all of it.
		if safe > q.afterSeq {
			q.afterSeq = safe
		}
		if err != nil || bw.Flush() != nil {
			return
		}
		if sent > 0 {
			lastWrite = time.Now()
		}
		c.Writer.Flush()
		if !follow {
			return
		}
		if _, ok := s.b.Node.Health(); !ok {
			return // no longer the leader that commits: the client moves on
		}
		select {
		case <-changed:
		case <-keepalive.C:
		case <-ctx.Done():
			return
		}
		if time.Since(lastWrite) >= keepaliveEvery {
			if _, err := io.WriteString(c.Writer, "\n"); err != nil {
				return
			}
			c.Writer.Flush()
			lastWrite = time.Now()
		}
	}
}

func (s *Server) fleetSummary(c *gin.Context) {
	sum, err := s.b.Fleet.Summary(s.b.Log)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, sum)
}

func (s *Server) failover(c *gin.Context) {
	var req FailoverRequest
	if c.Request.ContentLength != 0 {
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
		if err != nil {
			writeError(c, http.StatusBadRequest, "bad_body", err.Error())
			return
		}
		if len(strings.TrimSpace(string(body))) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				writeError(c, http.StatusBadRequest, "bad_json", `body must be {"to":"node-name","dry_run":false} (both optional): `+err.Error())
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), 30*time.Second)
	defer cancel()
	resp, err := s.b.Failover.Failover(ctx, req, who(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, resp)
}

// settingKey validates the key part of /v1/config/*key.
func settingKey(c *gin.Context) (string, bool) {
	key := strings.Trim(c.Param("key"), "/")
	if strings.Contains(key, "//") || strings.ContainsAny(key, " \t\n") || len(key) > 256 {
		writeError(c, http.StatusBadRequest, "bad_key", fmt.Sprintf("setting key %q must be at most 256 characters without spaces or empty path segments", key))
		return "", false
	}
	return key, true
}

func ifMatch(c *gin.Context) (*int64, bool) {
	v := strings.Trim(c.GetHeader("If-Match"), `" `)
	if v == "" {
		return nil, true
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		writeError(c, http.StatusBadRequest, "bad_if_match", fmt.Sprintf("If-Match %q must be a revision number (0: the key must not exist)", v))
		return nil, false
	}
	return &n, true
}

func (s *Server) getSetting(c *gin.Context) {
	key, ok := settingKey(c)
	if !ok {
		return
	}
	if key == "" {
		list, rev, err := s.b.Settings.List(c.Request.Context())
		if err != nil {
			fail(c, err)
			return
		}
		if list == nil {
			list = []Setting{}
		}
		r := s.resolveStored(list)
		c.JSON(http.StatusOK, SettingsList{Settings: list, Revision: rev, Known: SettingInfos(r), Unknown: r.Unknown})
		return
	}
	st, err := s.b.Settings.Get(c.Request.Context(), key)
	if err != nil {
		fail(c, err)
		return
	}
	c.Header("ETag", strconv.FormatInt(st.Revision, 10))
	c.JSON(http.StatusOK, st)
}

func (s *Server) putSetting(c *gin.Context) {
	key, ok := settingKey(c)
	if !ok {
		return
	}
	if key == "" {
		writeError(c, http.StatusBadRequest, "bad_key", "PUT needs a key: /v1/config/<key>")
		return
	}
	rev, ok := ifMatch(c)
	if !ok {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err != nil {
		writeError(c, http.StatusRequestEntityTooLarge, "too_large", "a setting is at most 64 KiB")
		return
	}
	var req struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Value) == 0 {
		writeError(c, http.StatusBadRequest, "bad_json", `body must be {"value": <JSON>}; nothing was written`)
		return
	}
	if err := settings.Validate(key, req.Value); err != nil {
		s.settingRefused(c, err)
		return
	}
	var compact bytes.Buffer
	json.Compact(&compact, req.Value) // valid JSON: Unmarshal accepted it
	req.Value = compact.Bytes()
	st, err := s.b.Settings.Put(c.Request.Context(), key, req.Value, rev)
	if err != nil {
		fail(c, err)
		return
	}
	s.auditAction(c, "settings_put", map[string]any{"key": key, "revision": st.Revision})
	c.Header("ETag", strconv.FormatInt(st.Revision, 10))
	c.JSON(http.StatusOK, st)
}

func (s *Server) deleteSetting(c *gin.Context) {
	key, ok := settingKey(c)
	if !ok || key == "" {
		if ok {
			writeError(c, http.StatusBadRequest, "bad_key", "DELETE needs a key: /v1/config/<key>")
		}
		return
	}
	rev, ok := ifMatch(c)
	if !ok {
		return
	}
	st, err := s.b.Settings.Delete(c.Request.Context(), key, rev)
	if err != nil {
		fail(c, err)
		return
	}
	s.auditAction(c, "settings_delete", map[string]any{"key": key, "revision": st.Revision})
	c.JSON(http.StatusOK, st)
}

func (s *Server) auditAction(c *gin.Context, action string, details map[string]any) {
	rec := AuditRecord{At: time.Now().UTC(), Who: who(c), Action: action, Node: s.b.Node.NodeName(), Details: details}
	if err := s.b.Audit.Audit(c.Request.Context(), rec); err != nil {
		s.log.WithError(err).WithField("action", action).Error("AUDIT_WRITE_FAILED")
	}
}

func (s *Server) audit(c *gin.Context) {
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			writeError(c, http.StatusBadRequest, "bad_query", fmt.Sprintf("limit=%q must be an integer from 1 to 10000", v))
			return
		}
		limit = n
	}
	recs, err := s.b.Audit.AuditList(c.Request.Context(), limit)
	if err != nil {
		fail(c, err)
		return
	}
	if recs == nil {
		recs = []AuditRecord{}
	}
	c.JSON(http.StatusOK, AuditResponse{Records: recs})
}

func (s *Server) members(c *gin.Context) {
	ms, err := s.b.Members.Members(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, MembersResponse{Members: ms})
}

func (s *Server) addMember(c *gin.Context) {
	var req AddMemberRequest
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.Name == "" || req.PeerURL == "" {
		writeError(c, http.StatusBadRequest, "bad_json", `body must be {"name":"n4","peer_url":"http://10.0.0.4:2380"}; nothing was changed`)
		return
	}
	resp, err := s.b.Members.AddMember(c.Request.Context(), req, who(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, resp)
}

func (s *Server) removeMember(c *gin.Context) {
	if err := s.b.Members.RemoveMember(c.Request.Context(), c.Param("name"), who(c)); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"removed": c.Param("name")})
}

// snapshot streams a snapshot of the cluster (admin; the leader answers).
func (s *Server) snapshot(c *gin.Context) {
	started := false
	err := s.b.Snapshot.Snapshot(c.Request.Context(), who(c), func() io.Writer {
		started = true
		c.Header("Content-Type", wire.ContentTypeSnapshot)
		c.Header("Cache-Control", "no-store")
		c.Header("Content-Disposition", `attachment; filename="autonomy.snapshot"`)
		c.Status(http.StatusOK)
		return c.Writer
	})
	switch {
	case err != nil && !started:
		fail(c, err)
	case err != nil:
		// The stream ends without its trailer: the client refuses it.
		s.log.WithError(err).WithField("who", who(c)).Warn("SNAPSHOT_STREAM_CUT")
	}
}
