: > empty
printf 'no newline' > no-newline
head -c 300000 /dev/zero | tr '\0' 'x' > big
