FROM alpine
COPY app.py a.txt /app
