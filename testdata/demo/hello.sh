#!/bin/sh
echo "$GREETING ($(cat /app/built.txt))"
