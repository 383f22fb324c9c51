FROM alpine AS base
from alpine as other
