FROM alpine
COPY app.py a.txt /app/
WORKDIR /srv
COPY app.py a.txt /srv
COPY app.py a.txt .
COPY app.py /one
