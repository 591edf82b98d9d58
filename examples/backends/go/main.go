// A roomcast back end in Go, standard library only (net/http, crypto/hmac).
//
// It shows the four things a back end does with roomcast:
//  1. mints HS256 API tokens itself (an operator token to `register` the system, a system
//     token for everything else) and registers the system;
//  2. mints a connect token for one user (scope "connect", sub = the user) and prints the
//     WebSocket URL a page would open with it;
//  3. receives the presence webhooks on 127.0.0.1, verifying each request's signature and
//     timestamp (HMAC-SHA256 of "<timestamp>.<raw body>", compared in constant time, refused
//     401 when more than 5 minutes off), and prints one line per event;
//  4. when that user's client_connected webhook names its clientId: binds it to a group,
//     sends to the group and to the user, and reads the group's online list.
//
// Run (see ../README.md):
//
//	export ROOMCAST_JWT_SECRET=dev-secret ROOMCAST_WEBHOOK_SECRET=hook-secret
//	go run main.go                 # prints: listening http://127.0.0.1:PORT/hook
//	target/release/roomcast --webhook-url http://127.0.0.1:PORT/hook &   # same two secrets
//	# press Enter (or type the server's base URL), open the printed connect-url with any
//	# WebSocket client; close stdin (Ctrl-D) to stop.
//
// Settings (environment): ROOMCAST_URL (http://127.0.0.1:7800), ROOMCAST_JWT_SECRET,
// ROOMCAST_WEBHOOK_SECRET, HOOK_PORT (0: any free port), SYSTEM_ID (demo), USER_ID (alice),
// GROUP_NAME (room1).
package main

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func setting(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	if fallback == "" {
		fail("main.go: set %s", name)
	}
	return fallback
}

var (
	jwtSecret  = []byte(setting("ROOMCAST_JWT_SECRET", ""))
	hookSecret = []byte(setting("ROOMCAST_WEBHOOK_SECRET", ""))
	system     = setting("SYSTEM_ID", "demo")
	user       = setting("USER_ID", "alice")
	group      = setting("GROUP_NAME", "room1")
)

type M = map[string]any

// jwt is an HS256 JWT: base64url(header).base64url(claims).base64url(HMAC-SHA256 of both).
func jwt(claims M, ttl time.Duration) string {
	now := time.Now().Unix()
	claims["iat"], claims["exp"] = now, now+int64(ttl.Seconds())
	head, _ := json.Marshal(M{"alg": "HS256", "typ": "JWT"})
	body, _ := json.Marshal(claims)
	b64 := base64.RawURLEncoding.EncodeToString
	signed := b64(head) + "." + b64(body)
	mac := hmac.New(sha256.New, jwtSecret)
	mac.Write([]byte(signed))
	return signed + "." + b64(mac.Sum(nil))
}

// api POSTs /api/<name> and decodes the answer's data into out (unless nil); it returns the
// status and exits on any status not in accept (default: 200 only).
func api(base, name string, body M, token, sys string, out any, accept ...int) int {
	payload, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/"+name, bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if sys != "" {
		req.Header.Set("SystemId", sys)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		fail("roomcast %s: cannot reach %s: %v", name, base, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	if len(accept) == 0 {
		accept = []int{http.StatusOK}
	}
	for _, ok := range accept {
		if resp.StatusCode == ok {
			if out != nil {
				var answer struct{ Data json.RawMessage }
				if err := json.Unmarshal(text, &answer); err != nil || json.Unmarshal(answer.Data, out) != nil {
					fail("roomcast %s: unexpected answer %s", name, text)
				}
			}
			return resp.StatusCode
		}
	}
	fail("roomcast %s: HTTP %d %s", name, resp.StatusCode, text)
	return 0
}

// refusal says why a webhook request is refused ("": it is roomcast's, and fresh).
func refusal(body []byte, timestamp, signature string) string {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	digits := err == nil && strings.Trim(timestamp, "0123456789") == ""
	if age := time.Now().Unix() - ts; !digits || age > 300 || age < -300 {
		return "missing or stale X-Roomcast-Timestamp"
	}
	mac := hmac.New(sha256.New, hookSecret)
	mac.Write([]byte(timestamp + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return "bad X-Roomcast-Signature"
	}
	return ""
}

type event struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	SystemID  string `json:"systemId"`
	ClientID  string `json:"clientId"`
	UserID    string `json:"userId"`
	GroupName string `json:"groupName"`
	Count     *int64 `json:"count"` // events_dropped
}

// subject is what an event is about, for its line.
func (e event) subject() string {
	switch {
	case e.ClientID != "":
		return e.ClientID
	case e.UserID != "":
		return e.UserID
	case e.GroupName != "":
		return e.GroupName
	case e.Count != nil:
		return strconv.FormatInt(*e.Count, 10)
	}
	return ""
}

func main() {
	var mu sync.Mutex
	seen := map[string]bool{}         // event ids already handled: a retried batch resends them
	connected := make(chan string, 1) // clientIds of USER's client_connected events
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
		if r.Method != http.MethodPost || err != nil {
			http.Error(w, "POST a webhook batch", http.StatusBadRequest)
			return
		}
		if why := refusal(body, r.Header.Get("X-Roomcast-Timestamp"), r.Header.Get("X-Roomcast-Signature")); why != "" {
			fmt.Fprintln(os.Stderr, "webhook refused:", why)
			http.Error(w, why, http.StatusUnauthorized)
			return
		}
		var batch struct {
			Events []event `json:"events"`
		}
		if err := json.Unmarshal(body, &batch); err != nil {
			http.Error(w, "not a JSON batch", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range batch.Events {
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			fmt.Printf("webhook %s %s\n", e.Name, e.subject())
			if e.Name == "client_connected" && e.SystemID == system && e.UserID == user {
				select {
				case connected <- e.ClientID:
				default: // only the first one is used
				}
			}
		}
		fmt.Fprint(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:"+setting("HOOK_PORT", "0"))
	if err != nil {
		fail("main.go: cannot listen: %v", err)
	}
	go func() { fail("main.go: webhook receiver: %v", http.Serve(ln, mux)) }()
	fmt.Printf("listening http://%s/hook\n", ln.Addr())
	fmt.Fprintln(os.Stderr, "start roomcast with that --webhook-url, then press Enter (or type its base URL)")
	stdin := bufio.NewScanner(os.Stdin)
	if !stdin.Scan() {
		return
	}
	base := strings.TrimSpace(stdin.Text())
	if base == "" {
		base = setting("ROOMCAST_URL", "http://127.0.0.1:7800")
	}
	base = strings.TrimRight(base, "/")
	stdinClosed := make(chan struct{}) // closing stdin stops the example, at any time
	go func() {
		for stdin.Scan() {
		}
		close(stdinClosed)
	}()

	// 1. register the system: only an operator token may.
	status := api(base, "register", M{"systemId": system}, jwt(M{"role": "operator"}, 5*time.Minute), "", nil, 200, 409)
	if status == http.StatusConflict {
		fmt.Printf("registered %s (already)\n", system)
	} else {
		fmt.Printf("registered %s\n", system)
	}
	token := jwt(M{"systemId": system}, time.Hour) // every other call: a token for this system only

	// 2. a connect token for USER: it opens a WebSocket as that user, and calls no API.
	connect := jwt(M{"scope": "connect", "systemId": system, "sub": user}, 10*time.Minute)
	fmt.Printf("connect-url %s/ws?systemId=%s&token=%s\n", strings.Replace(base, "http", "ws", 1), system, connect)

	// 3. + 4. the webhook tells us the clientId of USER's connection; then use it.
	var client string
	select {
	case client = <-connected:
	case <-stdinClosed:
		return
	}
	api(base, "bind_to_group", M{"clientId": client, "groupName": group, "userId": user}, token, system, nil)
	fmt.Printf("bound %s to %s\n", client, group)
	hello := func(to, value string) M {
		return M{to: value, "sendUserId": "backend", "code": 200, "msg": "hello " + value, "data": M{"from": "go"}}
	}
	var sent struct {
		MessageID string
		Clients   int
	}
	api(base, "send_to_group", hello("groupName", group), token, system, &sent)
	fmt.Printf("sent_to_group %s messageId=%s\n", group, sent.MessageID)
	api(base, "send_to_user", hello("userId", user), token, system, &sent)
	fmt.Printf("sent_to_user %s messageId=%s clients=%d\n", user, sent.MessageID, sent.Clients)
	var online struct {
		Count int
		List  []string
	}
	api(base, "get_online_list", M{"groupName": group}, token, system, &online)
	fmt.Printf("online %s count=%d clients=%s\n", group, online.Count, strings.Join(online.List, ","))

	fmt.Fprintln(os.Stderr, "serving webhooks until stdin closes")
	<-stdinClosed
}
