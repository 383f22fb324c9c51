FROM alpine
CMD ["a"]
ENTRYPOINT ["x"]
CMD ["b"]
