#!/bin/bash
# make demo: a whole Berth cluster on this machine, the esProc design's Employee example, and a
# clean exit.
# Two agents (127.0.0.2, 127.0.0.3) and a manager share the local Docker engine, all over TLS
# with a CA made for the demo; a demo user logs in, queries EMPLOYEE.txt on one unit and split over two, logs out. Nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# DEMO_BIN: run the berth programs in this folder instead of building them (scripts/link-order.sh
# profiles the demo so).

step "checking packages and the Docker engine"
scripts/ensure-engine.sh
if [ -n "${DEMO_BIN:-}" ]; then
  bin=$DEMO_BIN
else
  step "building Berth"
  swift build 2>&1 | grep --line-buffered -E "error:|Compiling|Build complete" | awk '{ printf "\r  %-70.70s", $0 } END { print "" }' 
  bin=$(swift build --show-bin-path)
fi
step "building the berth-unit image"
scripts/build-unit-image.sh 2>&1 | grep --line-buffered -E "^==>|error:|Compiling|Build of" | awk '/^==>/ { print "\r" $0; next } { printf "\r  %-70.70s", $0 }' 

demo=$(mktemp -d /tmp/berth-demo.XXXXXX)
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  # Whatever the demo user still has (after a failure): containers and networks.
  ids=$(curl -sf --unix-socket /var/run/docker.sock 'http://docker/containers/json?all=1&filters=%7B%22label%22%3A%5B%22berth.user%3Ddemo%22%5D%7D' | grep -o '"Id":"[0-9a-f]*"' | cut -d'"' -f4)
  for id in $ids; do curl -sf -X DELETE --unix-socket /var/run/docker.sock "http://docker/containers/$id?force=1" >/dev/null; done
  for net in "berth-demo-127.0.0.2-${comm:-}" "berth-demo-127.0.0.3-${comm:-}"; do curl -sf -X DELETE --unix-socket /var/run/docker.sock "http://docker/networks/$net" >/dev/null; done
  rm -rf "$demo"
}
trap cleanup EXIT

taken() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
free_port() { local host=$1 port=$2; while taken "$host" "$port" || taken 127.0.0.1 "$port"; do port=$((port + 1)); done; echo "$port"; }
comm=$(free_port 127.0.0.3 "$(free_port 127.0.0.2 9001)")
manager=$(free_port 127.0.0.1 9000)
unit1=$(free_port 127.0.0.2 8281)
unit2=$(free_port 127.0.0.3 $((unit1 + 1)))

step "writing a demo cluster under $demo"
mkdir -p "$demo/share" "$demo/home/demo/data" "$demo/home/demo/script" "$demo/state"
head -c 32 /dev/urandom | base64 > "$demo/cluster.key"
chmod 600 "$demo/cluster.key"
# EMPLOYEE.txt in the esProc design's columns: 500 employees over five states.
awk 'BEGIN {
  OFS = "\t"; split("Rebecca Ashley Rachel Emily Matthew Alexis Megan Victoria Ryan Brooke Taylor Sarah Lauren Abigail Julia", n, " ")
  split("Moore Wilson Johnson Taylor Williams Davis Thomas Smith Brown Jones", s, " ")
  split("New York,Texas,California,Florida,Ohio", st, ",")
  print "EID", "NAME", "SURNAME", "GENDER", "STATE", "BIRTHDAY", "HIREDATE", "DEPT", "SALARY"
  for (i = 1; i <= 500; i++)
    printf "%d\t%s\t%s\t%s\t%s\t%d-%02d-%02d\t%d-%02d-01\t%d\t%d\n", i, n[i % 15 + 1], s[i % 10 + 1], (i % 2 ? "M" : "F"),
      st[i % 5 + 1], 1965 + i % 25, i % 12 + 1, i % 28 + 1, 2000 + i % 20, i % 12 + 1, i % 6 + 1, 5000 + (i * 37) % 10000
}' > "$demo/home/demo/data/EMPLOYEE.txt"
cat > "$demo/home/demo/script/Employee.sh" <<'SH'
# Employee.dfx: the rows of EMPLOYEE.txt whose STATE is $1.
awk -F '\t' -v state="$1" 'NR == 1 || $5 == state' /app/data/EMPLOYEE.txt
SH
cat > "$demo/home/demo/script/Emp.sh" <<'SH'
# Emp.dfx: the same query over part BERTH_PART of BERTH_PARTS (the esProc design's [1,2],[2,2]).
awk -F '\t' -v state="$1" -v part="$BERTH_PART" -v parts="$BERTH_PARTS" '
  NR == 1 { print; next }
  total == 0 { while ((getline line < FILENAME) > 0) total++; total--; first = int((part - 1) * total / parts) + 2; last = int(part * total / parts) + 1 }
  NR >= first && NR <= last && $5 == state' /app/data/EMPLOYEE.txt
SH
# Units never run as root: the demo user has an account of their own, which owns the home.
if [ "$(id -u)" -eq 0 ]; then account=20001:20001; else account="$(id -u):$(id -g)"; fi
chown -R "$account" "$demo/home/demo"
step "making the cluster's CA and one certificate per host (berth-manager tls)"
"$bin/berth-manager" tls ca --out "$demo/tls/ca"
# The entry host's certificate names the manager's address too; only it may command agents.
"$bin/berth-manager" tls cert --ca "$demo/tls/ca" --host 127.0.0.2,127.0.0.1 --manager --out "$demo/tls"
"$bin/berth-manager" tls cert --ca "$demo/tls/ca" --host 127.0.0.3 --out "$demo/tls"
password="demo-$(head -c 6 /dev/urandom | base64 | tr -dc 'a-zA-Z0-9')"
hash=$(printf '%s\n' "$password" | "$bin/berth-manager" hash-password)
for host in 127.0.0.2 127.0.0.3; do
  cat > "$demo/docker_server_$host.xml" <<XML
<Config>
  <Server>$host:$comm</Server>
  <Share>$demo/share</Share>
  $( [ $host = 127.0.0.2 ] && echo "<NodeType>manager</NodeType><Manager>127.0.0.1:$manager</Manager>" )
  <Secret>$demo/cluster.key</Secret>
  <HomeRoot>$demo/home</HomeRoot>
  <LogDir>$demo/agent-logs</LogDir>
  <CA>$demo/tls/ca/ca.crt</CA>
  <Cert>$demo/tls/$host.crt</Cert>
  <Key>$demo/tls/$host.key</Key>
</Config>
XML
done
cat > "$demo/docker_user.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<Users>
  <User>
    <Name>demo</Name>
    <Alias>演示用户</Alias>
    <PwdHash>$hash</PwdHash>
    <Memory>128m</Memory>
    <CPU>512</CPU>
    <Home>$demo/home/demo</Home>
    <Uid>$account</Uid>
    <Unit>127.0.0.2:$unit1,127.0.0.3:$unit2</Unit>
  </User>
</Users>
XML
"$bin/berth-manager" check-config --config "$demo/docker_server_127.0.0.2.xml" --users "$demo/docker_user.xml"

step "starting agents on 127.0.0.2:$comm and 127.0.0.3:$comm, the manager on 127.0.0.1:$manager"
for host in 127.0.0.2 127.0.0.3; do
  "$bin/berth-agent" serve --config "$demo/docker_server_$host.xml" > "$demo/agent-$host.log" 2>&1 &
  pids+=($!)
done
"$bin/berth-manager" serve --config "$demo/docker_server_127.0.0.2.xml" --users "$demo/docker_user.xml" --state-dir "$demo/state" > "$demo/manager.log" 2>&1 &
pids+=($!)
for address in 127.0.0.2:$comm 127.0.0.3:$comm 127.0.0.1:$manager; do
  for _ in $(seq 1 600); do taken "${address%:*}" "${address#*:}" && break; sleep 0.1; done
done

export BERTH_SESSION="$demo/session.json"
step "berth login --server 127.0.0.1:$manager --user demo --ca $demo/tls/ca/ca.crt   (TLS, checked against the cluster's CA)"
printf '%s\n' "$password" | "$bin/berth" login --server "127.0.0.1:$manager" --user demo --password-stdin --ca "$demo/tls/ca/ca.crt"
step "berth status"
"$bin/berth" status
step "berth call Employee.sh \"New York\" --unit 127.0.0.2:$unit1   (Employee.dfx on one unit)"
"$bin/berth" call Employee.sh "New York" --unit "127.0.0.2:$unit1" > "$demo/one.tsv"
head -n 8 "$demo/one.tsv"
echo "… $(($(wc -l < "$demo/one.tsv") - 1)) rows"
step "berth call Emp.sh \"New York\" --split --header   (Emp.dfx split over two units, merged)"
"$bin/berth" call Emp.sh "New York" --split --header > "$demo/merged.tsv"
head -n 8 "$demo/merged.tsv"
echo "… $(($(wc -l < "$demo/merged.tsv") - 1)) New York employees from the two halves of the file (the single query found $(($(wc -l < "$demo/one.tsv") - 1)))"
step "berth logs --unit 127.0.0.2:$unit1 --tail 3"
"$bin/berth" logs --unit "127.0.0.2:$unit1" --tail 3
step "berth logout"
"$bin/berth" logout
left=$("$bin/berth-agent" ps --config "$demo/docker_server_127.0.0.2.xml" | tail -n +2 | grep -c demo || true)
echo "unit containers left: $left; the home keeps its files: $(ls "$demo/home/demo" | tr '\n' ' ')"

cat <<TXT

Try next:
  make test                  every test, Docker ones included
  berth --help               login, status, logs, exec, shell, call, logout
  Resources/templates/samples/docker_server.xml and docker_user.xml: start your own cluster
TXT
