"""Registration, log in, tokens, and the caller's own profile."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from redis.exceptions import RedisError

from ordersys.errors import InfrastructureUnavailable, Unauthenticated
from ordersys.settings import address_of
from ordersys.shop.gateway.auth import Principal, current_user
from ordersys.shop.gateway.context import call, command, gateway
from ordersys.shop.gateway.models import (
    Login,
    Profile,
    ProfileChange,
    Refresh,
    Registration,
    TokenPair,
)
from ordersys.shop.gateway.problems import responses

router = APIRouter()

AUTH = responses(401, 429)


@router.post(
    "/auth/register",
    status_code=201,
    response_model=Profile,
    tags=["auth"],
    summary="Register as a customer",
    responses=responses(409, 413, 422, 429),
)
async def register(body: Registration, request: Request, response: Response) -> Any:
    reply = await command(
        request,
        "user.create",
        email=body.email,
        name=body.name,
        password=body.password,
        role="customer",
    )
    profile = await call(request, "user.get", user_id=reply["aggregate_id"])
    response.headers["Location"] = "/users/me"
    return profile


@router.post(
    "/auth/login",
    response_model=TokenPair,
    tags=["auth"],
    summary="Log in: an access token and a refresh token",
    responses=responses(401, 422, 429),
)
async def login(body: Login, request: Request) -> Any:
    profile = await call(
        request, "user.authenticate", email=body.email, password=body.password
    )
    return gateway(request).tokens.issue(profile["user_id"], profile["role"])


@router.post(
    "/auth/refresh",
    response_model=TokenPair,
    tags=["auth"],
    summary="Trade a refresh token (once) for a new pair",
    responses=responses(401, 422, 429),
)
async def refresh(body: Refresh, request: Request) -> Any:
    gw = gateway(request)
    claims = gw.tokens.verify(body.refresh_token, "refresh")
    try:
        first = await gw.redis.set(
            f"{gw.prefix}:refreshed:{claims['jti']}",
            "1",
            nx=True,
            ex=max(int(claims["exp"]) - int(claims["iat"]), 1),
        )
    except RedisError as e:
        raise InfrastructureUnavailable(
            "Redis", address_of(gw.settings.redis_url), str(e)
        ) from None
    if not first:
        raise Unauthenticated("this refresh token has been used already")
    # The role may have changed since the token was issued: ask again.
    profile = await call(request, "user.get", user_id=claims["sub"])
    return gw.tokens.issue(profile["user_id"], profile["role"])


@router.get(
    "/users/me",
    response_model=Profile,
    tags=["users"],
    summary="My profile",
    responses=AUTH,
)
async def me(request: Request, user: Principal = Depends(current_user)) -> Any:  # noqa: B008
    return await call(request, "user.get", user_id=user.subject)


@router.patch(
    "/users/me",
    response_model=Profile,
    tags=["users"],
    summary="Change my name",
    responses=responses(401, 413, 422, 429),
)
async def change_me(
    body: ProfileChange,
    request: Request,
    user: Principal = Depends(current_user),  # noqa: B008
) -> Any:
    await command(request, "user.update", user_id=user.subject, name=body.name)
    return await call(request, "user.get", user_id=user.subject)
