FROM alpine
ADD app.py /app/
