FROM alpine
copy a.txt /a
COPY a.txt /b
Run true
