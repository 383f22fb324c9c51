FROM alpine
RUN echo crlf \
    continued
ENV A=1
COPY <<EOF /f
line one
EOF
CMD ["sh"]
