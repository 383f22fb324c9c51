FROM alpine
RUN echo hi
COPPY . /app
