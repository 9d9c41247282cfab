#!/bin/sh
# redis: the server's own ceiling, redis-benchmark -q on GET and SET, the
# same shapes as the clients' rows: PORT seq|concurrent|pipelined.
# Prints "metric ops_per_second N" (the mean of SET and GET).
port=$1
case "$2" in
  seq) opts="-c 1 -n 20000" ;;
  concurrent) opts="-c 50 -n 100000" ;;
  *) opts="-c 1 -P 100 -n 200000" ;;
esac
redis-benchmark -h 127.0.0.1 -p "$port" -q -t set,get -d 64 $opts 2>/dev/null | tr '\r' '\n' |
  awk '/requests per second/ { gsub(",", "", $2); sum += $2; n++ }
       END { if (n) printf "metric ops_per_second %.0f\n", sum / n }'
