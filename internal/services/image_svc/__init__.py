"""image_svc: PNG/JPEG to PDF through presigned URLs. The ImageService RPC (service) and its
app."""
