"""A batched ray caster for MJX scenes in pure JAX: cameras, scene extraction, shading."""

from rewardax.render.camera import Camera, FreeCamera, model_camera, primary_rays
from rewardax.render.renderer import Frame, Renderer, render
from rewardax.render.scene import Scene, from_model

__all__ = ["Camera", "FreeCamera", "Frame", "Renderer", "Scene", "from_model", "model_camera", "primary_rays",
           "render"]
