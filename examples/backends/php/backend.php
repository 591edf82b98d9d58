<?php
// A roomcast back end in PHP 8 (php-cli), no extensions beyond the default ones: hash_hmac,
// json, stream contexts for the API calls and stream_socket_server for the webhook receiver.
//
// It shows the four things a back end does with roomcast:
//   1. mints HS256 API tokens itself (an operator token to `register` the system, a system
//      token for everything else) and registers the system;
//   2. mints a connect token for one user (scope "connect", sub = the user) and prints the
//      WebSocket URL a page would open with it;
//   3. receives the presence webhooks on 127.0.0.1, verifying each request's signature and
//      timestamp (HMAC-SHA256 of "<timestamp>.<raw body>", compared in constant time, refused
//      401 when more than 5 minutes off), and prints one line per event;
//   4. when that user's client_connected webhook names its clientId: binds it to a group,
//      sends to the group and to the user, and reads the group's online list.
//
// Run (see ../README.md):
//   export ROOMCAST_JWT_SECRET=dev-secret ROOMCAST_WEBHOOK_SECRET=hook-secret
//   php backend.php                # prints: listening http://127.0.0.1:PORT/hook
//   target/release/roomcast --webhook-url http://127.0.0.1:PORT/hook &   # same two secrets
//   # press Enter (or type the server's base URL), open the printed connect-url with any
//   # WebSocket client; close stdin (Ctrl-D) to stop.
// Settings (environment): ROOMCAST_URL (http://127.0.0.1:7800), ROOMCAST_JWT_SECRET,
// ROOMCAST_WEBHOOK_SECRET, HOOK_PORT (0: any free port), SYSTEM_ID (demo), USER_ID (alice),
// GROUP_NAME (room1).
declare(strict_types=1);

function fail(string $message): never
{
    fwrite(STDERR, "$message\n");
    exit(1);
}

function setting(string $name, ?string $default = null): string
{
    $value = getenv($name);
    $value = $value === false || $value === '' ? $default : $value;
    return $value ?? fail("backend.php: set $name");
}

$jwtSecret = setting('ROOMCAST_JWT_SECRET');
$hookSecret = setting('ROOMCAST_WEBHOOK_SECRET');
[$system, $user, $group] = [setting('SYSTEM_ID', 'demo'), setting('USER_ID', 'alice'), setting('GROUP_NAME', 'room1')];

function b64url(string $raw): string
{
    return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
}

// An HS256 JWT: base64url(header).base64url(claims).base64url(HMAC-SHA256 of both).
function jwt(string $secret, array $claims, int $ttl): string
{
    $now = time();
    $head = b64url(json_encode(['alg' => 'HS256', 'typ' => 'JWT']));
    $body = b64url(json_encode($claims + ['iat' => $now, 'exp' => $now + $ttl], JSON_UNESCAPED_SLASHES));
    return "$head.$body." . b64url(hash_hmac('sha256', "$head.$body", $secret, true));
}

// POST /api/<name>; returns [status, JSON answer]; exits on any status not in $ok.
function api(string $base, string $name, array $body, string $token, ?string $system = null, array $ok = [200]): array
{
    $headers = ['Content-Type: application/json', "Authorization: Bearer $token", 'Connection: close'];
    if ($system !== null) {
        $headers[] = "SystemId: $system";
    }
    $context = stream_context_create(['http' => [
        'method' => 'POST', 'header' => $headers, 'content' => json_encode($body, JSON_UNESCAPED_SLASHES),
        'protocol_version' => 1.1, 'timeout' => 10, 'ignore_errors' => true, // keep non-2xx bodies
    ]]);
    $text = @file_get_contents("$base/api/$name", false, $context);
    if ($text === false) {
        fail("roomcast $name: cannot reach $base: " . (error_get_last()['message'] ?? '?'));
    }
    $status = (int) (explode(' ', $http_response_header[0] ?? '')[1] ?? 0);
    if (!in_array($status, $ok, true)) {
        fail("roomcast $name: HTTP $status $text");
    }
    return [$status, json_decode($text, true)];
}

// Why a webhook request is refused (null: it is roomcast's, and fresh).
function refusal(string $secret, string $body, string $timestamp, string $signature): ?string
{
    if (!ctype_digit($timestamp) || abs(time() - (int) $timestamp) > 300) {
        return 'missing or stale X-Roomcast-Timestamp';
    }
    $want = 'sha256=' . hash_hmac('sha256', "$timestamp.$body", $secret);
    return hash_equals($want, $signature) ? null : 'bad X-Roomcast-Signature';
}

// Reads one request from $conn, answers it and closes; returns its verified new events.
function hook($conn, string $secret, array &$seen): array
{
    stream_set_timeout($conn, 5);
    $request = fgets($conn) ?: '';
    $headers = [];
    while (($line = fgets($conn)) !== false && rtrim($line) !== '') {
        [$k, $v] = array_pad(explode(':', $line, 2), 2, '');
        $headers[strtolower(trim($k))] = trim($v);
    }
    $length = (int) ($headers['content-length'] ?? 0);
    $body = $length > 0 ? (string) stream_get_contents($conn, $length) : '';
    $why = refusal($secret, $body, $headers['x-roomcast-timestamp'] ?? '', $headers['x-roomcast-signature'] ?? '');
    $events = [];
    if (!str_starts_with($request, 'POST /hook ')) {
        [$status, $text] = [404, 'not found'];
    } elseif ($why !== null) {
        fwrite(STDERR, "webhook refused: $why\n");
        [$status, $text] = [401, $why];
    } else {
        foreach (json_decode($body, true)['events'] as $e) {
            if (!isset($seen[$e['id']])) { // a retried batch resends ids (a real back end expires them)
                $seen[$e['id']] = true;
                $events[] = $e;
            }
        }
        [$status, $text] = [200, 'ok'];
    }
    $reason = [200 => 'OK', 401 => 'Unauthorized', 404 => 'Not Found'][$status];
    fwrite($conn, "HTTP/1.1 $status $reason\r\nContent-Type: text/plain\r\nContent-Length: " . strlen($text)
        . "\r\nConnection: close\r\n\r\n$text");
    fclose($conn);
    return $events;
}

// 1. + 2.: register the system, and mint a connect token for $user. Returns the system token.
function start(string $base, string $jwtSecret, string $system, string $user): string
{
    // Only an operator token may register.
    $operator = jwt($jwtSecret, ['role' => 'operator'], 300);
    [$status] = api($base, 'register', ['systemId' => $system], $operator, null, [200, 409]);
    echo "registered $system", $status === 409 ? ' (already)' : '', "\n";
    // A connect token opens a WebSocket as that user, and calls no API.
    $connect = jwt($jwtSecret, ['scope' => 'connect', 'systemId' => $system, 'sub' => $user], 600);
    echo 'connect-url ', preg_replace('/^http/', 'ws', $base), "/ws?systemId=$system&token=$connect\n";
    return jwt($jwtSecret, ['systemId' => $system], 3600); // every other call: a token for this system only
}

// 4.: bind the user's connection to $group, send to the group and to the user, list the group.
function use_client(string $base, string $token, string $system, string $user, string $group, string $client): void
{
    api($base, 'bind_to_group', ['clientId' => $client, 'groupName' => $group, 'userId' => $user], $token, $system);
    echo "bound $client to $group\n";
    $hello = ['sendUserId' => 'backend', 'code' => 200, 'data' => ['from' => 'php']];
    [, $v] = api($base, 'send_to_group', $hello + ['groupName' => $group, 'msg' => "hello $group"], $token, $system);
    echo "sent_to_group $group messageId={$v['data']['messageId']}\n";
    [, $v] = api($base, 'send_to_user', $hello + ['userId' => $user, 'msg' => "hello $user"], $token, $system);
    echo "sent_to_user $user messageId={$v['data']['messageId']} clients={$v['data']['clients']}\n";
    [, $v] = api($base, 'get_online_list', ['groupName' => $group], $token, $system);
    echo "online $group count={$v['data']['count']} clients=", implode(',', $v['data']['list']), "\n";
    fwrite(STDERR, "serving webhooks until stdin closes\n");
}

$hooks = stream_socket_server('tcp://127.0.0.1:' . setting('HOOK_PORT', '0'), $errno, $error)
    ?: fail("backend.php: cannot listen: $error");
echo 'listening http://', stream_socket_get_name($hooks, false), "/hook\n";
fwrite(STDERR, "start roomcast with that --webhook-url, then press Enter (or type its base URL)\n");

// One thread: serve webhooks until stdin closes. The first stdin line starts the calls (1. + 2.);
// once a webhook (3.) names the clientId of $user's connection, use it (4.).
[$base, $token, $client, $done, $seen] = [null, null, null, false, []];
while (true) {
    $read = [$hooks, STDIN];
    $write = $except = null;
    if (stream_select($read, $write, $except, null) === false) {
        fail('backend.php: select failed');
    }
    if (in_array(STDIN, $read, true)) {
        $line = fgets(STDIN);
        if ($line === false && feof(STDIN)) {
            exit(0);
        }
        if ($base === null && $line !== false) {
            $base = rtrim(trim($line) ?: setting('ROOMCAST_URL', 'http://127.0.0.1:7800'), '/');
            $token = start($base, $jwtSecret, $system, $user);
        }
    }
    if (in_array($hooks, $read, true) && ($conn = @stream_socket_accept($hooks, 0))) {
        foreach (hook($conn, $hookSecret, $seen) as $e) {
            echo "webhook {$e['name']} ", $e['clientId'] ?? $e['userId'] ?? $e['groupName'] ?? $e['count'] ?? '', "\n";
            $mine = $e['name'] === 'client_connected' && $e['systemId'] === $system && ($e['userId'] ?? null) === $user;
            $client ??= $mine ? $e['clientId'] : null;
        }
    }
    if ($token !== null && $client !== null && !$done) {
        use_client($base, $token, $system, $user, $group, $client);
        $done = true;
    }
}
