d=long/$(printf 'd%.0s' $(seq 1 90))/$(printf 'e%.0s' $(seq 1 90))
mkdir -p "$d"
echo deep > "$d/$(printf 'f%.0s' $(seq 1 120)).txt"
