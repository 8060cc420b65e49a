#!/bin/bash
# The stand-in's answer to the health check of docker-compose.yml: exits 0 when the broker at
# --bootstrap-server HOST:PORT answers a Kafka ApiVersions request (the official tool prints the versions;
# this one only checks that a correlated response comes back).
set -euo pipefail
server=localhost:9092
while (($#)); do
  case $1 in
    --bootstrap-server) server=$2; shift 2 ;;
    *) shift ;;
  esac
done
exec 3<>"/dev/tcp/${server%:*}/${server##*:}" 2>/dev/null
# size=15 | api_key=18 (ApiVersions) | api_version=0 | correlation_id=7 | client_id="probe"
printf '\x00\x00\x00\x0f\x00\x12\x00\x00\x00\x00\x00\x07\x00\x05probe' >&3
reply=$(timeout 5 head -c 8 <&3 | od -An -tx1 | tr -d ' \n')
[[ ${reply:8:8} == 00000007 ]]
