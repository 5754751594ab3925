#!/usr/bin/env bash
# Generates the Python classes of AgentCRM's contract from bus-schema/proto
# into ./agentcrm_pb (protoc as shipped in grpcio-tools from PyPI; no system
# protoc needed). Creates ./.venv with the pinned requirements on first use.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
fi
rm -rf agentcrm_pb && mkdir -p agentcrm_pb
.venv/bin/python -m grpc_tools.protoc \
    -I ../../bus-schema/proto \
    --python_out=agentcrm_pb \
    ../../bus-schema/proto/agentcrm/v1/envelope.proto \
    ../../bus-schema/proto/agentcrm/v1/customer.proto
touch agentcrm_pb/__init__.py agentcrm_pb/agentcrm/__init__.py agentcrm_pb/agentcrm/v1/__init__.py
echo "generated: $(ls agentcrm_pb/agentcrm/v1/*_pb2.py | xargs -n1 basename | tr '\n' ' ')"
